"""services/paper_trading/ledger.py directly, on both databases: the locked book, the
balance moves and their compare-and-set write, and booking fills, with the invariant

    cash + Σ position cost basis = initial + realized PnL - fees   (exactly)
    Σ locked of the open orders = the balance's locked amount

checked on what the ledger wrote (and, for the second, through the service's orders)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.exceptions import ConflictError, InsufficientFundsError, NotFoundError
from database.connection import Database
from database.orm import OPEN_ORDER_STATUSES, AccountBalance, Order, Position, Trade, TradingAccount
from database.orm.types import utcnow
from models.enums import Liquidity, OrderSide, OrderType
from services.container import Services
from services.paper_trading import ledger
from services.paper_trading.matching import make_fill
from services.paper_trading.rules import RuleViolation
from tests.factories import create_account, create_order, create_user
from tests.services.paper_trading import test_service as exchange
from tests.services.paper_trading.test_service import new_account, order, tick

services = exchange.services  # the fixture: the real services on each database

D = Decimal
SYMBOL = "BTC/USD"


async def _balances(db: Database, account_id: uuid.UUID) -> dict[str, tuple[Decimal, Decimal]]:
    async with db.read() as session:
        rows = (
            await session.execute(
                select(AccountBalance).where(AccountBalance.account_id == account_id)
            )
        ).scalars()
        return {row.asset: (row.free, row.locked) for row in rows}


async def _reconcile(db: Database, account_id: uuid.UUID) -> None:
    """cash + Σ cost basis = initial + realized PnL - fees, on the stored rows."""
    async with db.read() as session:
        account = await session.get(TradingAccount, account_id)
        assert account is not None
        positions = (
            await session.execute(select(Position).where(Position.account_id == account_id))
        ).scalars()
        cost = sum((p.cost_basis for p in positions), D(0))
        trades = list(
            (await session.execute(select(Trade).where(Trade.account_id == account_id))).scalars()
        )
    free, locked = (await _balances(db, account_id))["USD"]
    assert (
        free + locked + cost == account.initial_balance + account.realized_pnl - account.total_fees
    )
    assert account.total_fees == sum((t.fee for t in trades), D(0))
    assert account.realized_pnl == sum((t.realized_pnl for t in trades), D(0))


class TestLockedBook:
    async def test_lock_account_reads_the_users_account_and_its_balances(
        self, db: Database
    ) -> None:
        account = await create_account(db, cash="1000", balances={"BTC": "0.5"})
        async with db.transaction() as session:
            book = await ledger.lock_account(session, account.user_id, account.id)
        assert book.account.id == account.id
        assert (book.free("USD"), book.locked("USD")) == (D(1000), D(0))
        assert book.free("BTC") == D("0.5")
        assert book.free("ETH") == 0

    async def test_another_users_account_is_not_found(self, db: Database) -> None:
        account = await create_account(db)
        stranger = await create_user(db)
        async with db.transaction() as session:
            with pytest.raises(NotFoundError):
                await ledger.lock_account(session, stranger.id, account.id)
            with pytest.raises(NotFoundError):
                await ledger.lock_book(session, uuid.uuid4())
            assert (await ledger.lock_book(session, account.id)).account.id == account.id


class TestBalanceMoves:
    async def test_nothing_goes_below_zero(self, db: Database) -> None:
        account = await create_account(db, cash="100")
        async with db.transaction() as session:
            book = await ledger.lock_account(session, account.user_id, account.id)
            with pytest.raises(InsufficientFundsError, match="100 free"):
                ledger.change_balance(book, "USD", free=D("-100.01"), locked=D("100.01"))
            with pytest.raises(ledger.LedgerConflictError):
                ledger.change_balance(book, "USD", free=D(1), locked=D(-1))
            assert (book.free("USD"), book.locked("USD")) == (D(100), D(0))
            ledger.change_balance(book, "USD", free=D(-40), locked=D(40))
            ledger.change_balance(book, "BTC", free=D("0.1"))  # a new asset
            await ledger.write_balances(session, book)
        assert await _balances(db, account.id) == {"USD": (D(60), D(40)), "BTC": (D("0.1"), D(0))}

    async def test_a_balance_changed_since_the_read_refuses_the_whole_write(
        self, db: Database
    ) -> None:
        account = await create_account(db, cash="100")
        async with db.read() as session:
            stale = await ledger.lock_book(session, account.id)
        async with db.transaction() as session:
            book = await ledger.lock_book(session, account.id)
            ledger.change_balance(book, "USD", free=D(-10), locked=D(10))
            await ledger.write_balances(session, book)
        ledger.change_balance(stale, "USD", free=D(-50))
        ledger.change_balance(stale, "BTC", free=D(1))
        with pytest.raises(ledger.LedgerConflictError, match="USD"):
            async with db.transaction() as session:
                await ledger.write_balances(session, stale)
        assert await _balances(db, account.id) == {"USD": (D(90), D(10))}


class TestBookingFills:
    async def test_buy_then_sell_at_average_cost(self, db: Database) -> None:
        account = await create_account(db, cash="1000", maker_fee_bps="10", taker_fee_bps="20")
        placed = await create_order(db, account=account, quantity="2")
        now = utcnow()
        async with db.transaction() as session:
            book = await ledger.lock_book(session, account.id)
            position = await ledger.position_of(session, book.account, SYMBOL)
            assert position.quantity == 0
            for price, quantity in (("100", "1"), ("110", "1")):
                fill = make_fill(D(price), D(quantity), D(20), Liquidity.TAKER)
                ledger.book_fill(
                    session, book, position, order_id=placed.id, side=OrderSide.BUY,
                    fill=fill, base_asset="BTC", quote_asset="USD", executed_at=now,
                )  # fmt: skip
            sell = make_fill(D("120"), D("0.5"), D(10), Liquidity.MAKER)
            booked = ledger.book_fill(
                session, book, position, order_id=placed.id, side=OrderSide.SELL,
                fill=sell, base_asset="BTC", quote_asset="USD", executed_at=now,
            )  # fmt: skip
            assert booked.realized_pnl == D("60") - D("52.5")  # 0.5 x (120 - avg 105)
            assert position.avg_price == D(105)
            await ledger.write_balances(session, book)
        async with db.transaction() as session:
            assert (await ledger.position_of(session, book.account, SYMBOL)).quantity == D("1.5")
        await _reconcile(db, account.id)

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        orders=st.lists(
            st.tuples(
                st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
                st.integers(1, 300),  # thousandths of BTC
                st.integers(9000, 11000),  # cents
                st.lists(st.integers(1, 100), max_size=3),  # percent of the rest, per fill
                st.booleans(),  # rests (keeps its lock) or closes (releases it)
            ),
            min_size=1,
            max_size=8,
        )
    )
    async def test_any_sequence_of_fills_reconciles(
        self, db: Database, orders: list[tuple[Any, ...]]
    ) -> None:
        account = await create_account(db, cash="1000", balances={})
        open_locks: dict[str, Decimal] = {"USD": D(0), "BTC": D(0)}
        for side, thousandths, cents, fills, rests in orders:
            quantity, price = D(thousandths) / 1000, D(cents) / 100
            placed = await create_order(db, account=account, side=side.value, quantity=quantity)
            async with db.transaction() as session:
                book = await ledger.lock_book(session, account.id)
                asset = "USD" if side is OrderSide.BUY else "BTC"
                lock = quantity * price * D("1.002") if side is OrderSide.BUY else quantity
                lock = ledger.stored(lock)
                try:
                    ledger.change_balance(book, asset, free=-lock, locked=lock)
                except InsufficientFundsError:
                    continue
                position = await ledger.position_of(session, book.account, SYMBOL)
                left = quantity
                for percent in fills:
                    part = (left * percent / 100).quantize(D("0.00001"))
                    if not part:
                        continue
                    fill = make_fill(price, part, D(20), Liquidity.TAKER)
                    due = fill.notional + fill.fee if side is OrderSide.BUY else part
                    from_lock = min(due, lock)
                    ledger.book_fill(
                        session, book, position, order_id=placed.id, side=side, fill=fill,
                        base_asset="BTC", quote_asset="USD", executed_at=utcnow(),
                        cash_from_lock=from_lock if side is OrderSide.BUY else D(0),
                        base_from_lock=from_lock if side is OrderSide.SELL else D(0),
                    )  # fmt: skip
                    lock -= from_lock
                    left -= part
                if rests:
                    open_locks[asset] += lock
                else:
                    ledger.change_balance(book, asset, free=lock, locked=-lock)
                await ledger.write_balances(session, book)
            held = await _balances(db, account.id)
            for name, locked in open_locks.items():
                assert held.get(name, (D(0), D(0)))[1] == locked
            await _reconcile(db, account.id)


_Action = tuple[Any, ...]
_actions: st.SearchStrategy[_Action] = st.one_of(
    st.tuples(st.just("tick"), st.integers(90, 110)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.sampled_from([OrderType.LIMIT, OrderType.STOP]),
        st.integers(1, 40),  # hundredths of BTC
        st.integers(-5, 5),  # limit or stop offset from the mid
    ),
)


async def _assert_open_orders_hold_the_locks(services: Services, account_id: uuid.UUID) -> None:
    db = services.database.database
    async with db.read() as session:
        open_orders = list(
            (
                await session.execute(
                    select(Order).where(
                        Order.account_id == account_id,
                        Order.status.in_([s.value for s in OPEN_ORDER_STATUSES]),
                    )
                )
            ).scalars()
        )
    held = await _balances(db, account_id)
    for asset in ("USD", "BTC"):
        side = "buy" if asset == "USD" else "sell"
        locked = sum((o.locked_amount for o in open_orders if o.side == side), D(0))
        assert held.get(asset, (D(0), D(0)))[1] == locked, asset


class TestOpenOrdersHoldTheLocks:
    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(actions=st.lists(_actions, min_size=1, max_size=15))
    async def test_resting_orders_fills_and_cancels(
        self, services: Services, actions: list[_Action]
    ) -> None:
        account = await new_account(services, cash="1000")
        trading = services.paper_trading
        book: Callable[[int], Any] = lambda mid: tick(  # noqa: E731
            str(mid - 1),
            str(mid + 1),
            last=str(mid),
            bids=[(str(mid - 1), "0.2"), (str(mid - 2), "1")],
            asks=[(str(mid + 1), "0.2"), (str(mid + 2), "1")],
        )
        mid = 100
        await trading.on_ticks(book(mid))
        await trading.place_order(account.user_id, order("buy", "2"))  # some BTC to sell
        placed: list[uuid.UUID] = []
        for action in actions:
            if action[0] == "tick":
                mid = action[1]
                await trading.on_ticks(book(mid))
            elif action[0] == "cancel":
                if placed:
                    try:
                        await trading.cancel_order(account.user_id, placed[action[1] % len(placed)])
                    except ConflictError:
                        pass
            else:
                side, order_type, hundredths, offset = action
                price = str(mid + offset)
                fields: dict[str, Any] = {"order_type": order_type}
                fields["price" if order_type is OrderType.LIMIT else "stop_price"] = price
                try:
                    result = await trading.place_order(
                        account.user_id, order(side, str(D(hundredths) / 100), **fields)
                    )
                except (InsufficientFundsError, RuleViolation):
                    continue
                placed.append(result.id)
            await _assert_open_orders_hold_the_locks(services, account.id)
            await _reconcile(services.database.database, account.id)
