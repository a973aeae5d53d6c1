"""The pre-trade check on the real paper exchange (services/risk/gate.py): a refused order
changes nothing of the account or the book, every limit type refuses what it should and
lets the rest through, and the ledger invariant holds after each."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from core.exceptions import RiskLimitExceededError
from database.orm import TradingAccount
from database.orm.types import utcnow
from models.enums import OrderStatus
from models.portfolio import RebalanceOrderStatus, RebalanceRequest
from models.trading import OrderReplace
from services.container import Services
from tests.factories import create_account
from tests.services.paper_trading.ledger_check import (
    assert_ledger_holds,
    differences,
    snapshot_accounts,
    taker_book,
)
from tests.services.risk.conftest import (
    SYMBOL,
    add_limit,
    at_mark,
    book_at,
    mark,
    new_account,
    order,
)

D = Decimal


async def test_a_refused_order_changes_nothing_and_gives_its_depth_back(
    services: Services,
) -> None:
    account = await new_account(services)
    limit = await add_limit(
        services, account.user_id, limit_type="order_notional", limit_value="1000"
    )
    await at_mark(services)
    before, depth = await snapshot_accounts(services, [account.id]), taker_book(services, SYMBOL)
    quantity = (D(1500) / mark(services)).quantize(D("0.00001"))
    with pytest.raises(RiskLimitExceededError) as refused:
        await services.paper_trading.place_order(account.user_id, order("buy", str(quantity)))
    (named,) = refused.value.details["limits"]
    assert named["limit_id"] == str(limit.id)
    assert named["limit_type"] == "order_notional"
    assert D(named["projected"]) > D(1000)
    assert differences(before, await snapshot_accounts(services, [account.id])) == []
    assert taker_book(services, SYMBOL) == depth  # the depth it took is the market's again
    small = (D(900) / mark(services)).quantize(D("0.00001"))
    placed = await services.paper_trading.place_order(account.user_id, order("buy", str(small)))
    assert placed.status == OrderStatus.FILLED
    await assert_ledger_holds(services, [account.id])


async def test_resting_buys_count_toward_the_position_they_would_open(
    services: Services,
) -> None:
    account = await new_account(services)
    await add_limit(
        services, account.user_id, limit_type="position_size", limit_value="5000", symbol=SYMBOL
    )
    await at_mark(services)
    far = (mark(services) / 2).quantize(D("0.01"))
    quantity = (D(3000) / far).quantize(D("0.00001"))  # 3000 at its limit price, resting
    rests = await services.paper_trading.place_order(
        account.user_id, order("buy", str(quantity), order_type="limit", price=str(far))
    )
    assert rests.status == OrderStatus.PENDING
    with pytest.raises(RiskLimitExceededError, match="position_size"):
        await services.paper_trading.place_order(
            account.user_id, order("buy", str(quantity), order_type="limit", price=str(far))
        )
    # Cancelling the first frees its room.
    await services.paper_trading.cancel_order(account.user_id, rests.id)
    again = await services.paper_trading.place_order(
        account.user_id, order("buy", str(quantity), order_type="limit", price=str(far))
    )
    assert again.status == OrderStatus.PENDING
    await assert_ledger_holds(services, [account.id])


async def test_open_orders_limit_counts_resting_orders_only(services: Services) -> None:
    account = await new_account(services)
    await add_limit(services, account.user_id, limit_type="max_open_orders", limit_value="2")
    await at_mark(services)
    far = str((mark(services) / 2).quantize(D("0.01")))
    for _ in range(2):
        await services.paper_trading.place_order(
            account.user_id, order("buy", "0.001", order_type="limit", price=far)
        )
    with pytest.raises(RiskLimitExceededError, match="open orders"):
        await services.paper_trading.place_order(
            account.user_id, order("buy", "0.001", order_type="limit", price=far)
        )
    # A market order never rests: it passes.
    filled = await services.paper_trading.place_order(account.user_id, order("buy", "0.001"))
    assert filled.status == OrderStatus.FILLED
    await assert_ledger_holds(services, [account.id])


async def test_a_daily_loss_reached_stops_entries_and_lets_exits_through(
    services: Services,
) -> None:
    account = await new_account(services)
    await add_limit(services, account.user_id, limit_type="daily_loss", limit_value="500")
    price = mark(services)
    # Buying 10% over the mark loses about 1% of the notional at once (plus the fee).
    await services.paper_trading.on_ticks(book_at(services, ask=price * D("1.1"), bid=price - 1))
    await services.paper_trading.place_order(account.user_id, order("buy", "0.6"))
    with pytest.raises(RiskLimitExceededError, match="today's loss"):
        await services.paper_trading.place_order(account.user_id, order("buy", "0.001"))
    sold = await services.paper_trading.place_order(account.user_id, order("sell", "0.3"))
    assert sold.status == OrderStatus.FILLED
    await assert_ledger_holds(services, [account.id])


async def test_the_day_of_a_reset_starts_from_the_new_balance(services: Services) -> None:
    """An account opened before today, reset today: its snapshots are gone, and the
    day's loss is still measured, from the balance it was reset to."""
    account = await new_account(services)
    async with services.database.database.transaction() as session:
        await session.execute(
            update(TradingAccount)
            .where(TradingAccount.id == account.id)
            .values(created_at=utcnow() - timedelta(days=3))
        )
    await add_limit(services, account.user_id, limit_type="daily_loss", limit_value="500")
    await services.paper_lifecycle.reset_account(account.user_id, account.id)
    price = mark(services)
    await services.paper_trading.on_ticks(book_at(services, ask=price * D("1.1"), bid=price - 1))
    await services.paper_trading.place_order(account.user_id, order("buy", "0.6"))
    with pytest.raises(RiskLimitExceededError, match="today's loss"):
        await services.paper_trading.place_order(account.user_id, order("buy", "0.001"))


async def test_leverage_and_gross_exposure_refuse_the_buy_that_passes_them(
    services: Services,
) -> None:
    account = await new_account(services, cash="10000")
    await add_limit(services, account.user_id, limit_type="leverage", limit_value="0.5")
    await at_mark(services)
    quarter = (D(2500) / mark(services)).quantize(D("0.00001"))
    await services.paper_trading.place_order(account.user_id, order("buy", str(quarter)))
    with pytest.raises(RiskLimitExceededError, match="leverage"):
        await services.paper_trading.place_order(account.user_id, order("buy", str(quarter * 2)))
    await services.paper_trading.place_order(account.user_id, order("buy", str(quarter / 2)))
    await assert_ledger_holds(services, [account.id])


async def test_a_replace_is_checked_as_the_new_order(services: Services) -> None:
    account = await new_account(services)
    await add_limit(services, account.user_id, limit_type="order_notional", limit_value="1000")
    await at_mark(services)
    far = (mark(services) / 2).quantize(D("0.01"))
    rests = await services.paper_trading.place_order(
        account.user_id, order("buy", "0.01", order_type="limit", price=str(far))
    )
    with pytest.raises(RiskLimitExceededError):
        await services.paper_trading.replace_order(
            account.user_id, rests.id, OrderReplace(quantity=D("0.1"))
        )
    kept = await services.paper_trading.get_order(account.user_id, rests.id)
    assert kept.status == OrderStatus.PENDING  # the replace was refused whole
    await assert_ledger_holds(services, [account.id])


async def test_limits_hold_on_their_account_and_inactive_ones_on_none(
    services: Services,
) -> None:
    first = await new_account(services)
    second = await create_account(services.database.database, user_id=first.user_id, cash="100000")
    await add_limit(
        services,
        first.user_id,
        limit_type="order_notional",
        limit_value="10",
        account_id=str(first.id),
    )
    await add_limit(
        services, first.user_id, limit_type="gross_exposure", limit_value="1", is_active=False
    )
    await at_mark(services)
    with pytest.raises(RiskLimitExceededError):
        await services.paper_trading.place_order(first.user_id, order("buy", "0.001"))
    placed = await services.paper_trading.place_order(
        first.user_id, order("buy", "0.001", account_id=str(second.id))
    )
    assert placed.status == OrderStatus.FILLED


async def test_a_rebalance_order_is_checked_like_any_other(services: Services) -> None:
    account = await new_account(services, cash="10000")
    await add_limit(services, account.user_id, limit_type="order_notional", limit_value="1000")
    await at_mark(services)
    plan = await services.portfolio.rebalance(
        account.user_id,
        RebalanceRequest.model_validate(
            {"targets": [{"symbol": SYMBOL, "weight": "0.5"}], "account_id": str(account.id)}
        ),
    )
    (planned,) = plan.orders
    assert planned.status == RebalanceOrderStatus.FAILED
    assert planned.reason_code == "risk_limit_exceeded"
    assert planned.reason is not None
    assert "order_notional" in planned.reason
    await assert_ledger_holds(services, [account.id])
