"""database/repositories/portfolio.py: snapshots, and the positions, trades and accounts
the portfolio reads; each account's rows only with its owner's user_id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import update

from database.connection import Database
from database.orm import PortfolioSnapshot, TradingAccount
from database.repositories import portfolio
from tests.database.repositories.row_locks import assert_holds_until_commit
from tests.factories import create_account, create_order, create_position, create_trade

D = Decimal
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


async def _snapshot(
    db: Database, account: TradingAccount, taken_at: datetime, equity: str
) -> PortfolioSnapshot:
    async with db.transaction() as session:
        return await portfolio.add_snapshot(
            session,
            account.id,
            user_id=account.user_id,
            equity=D(equity),
            cash=D(equity) - 10,
            positions_value=D(10),
            realized_pnl=D(1),
            unrealized_pnl=D(2),
            fees=D("0.5"),
            taken_at=taken_at,
        )


async def _history(db: Database) -> tuple[TradingAccount, TradingAccount]:
    """An account with snapshots at T0, T0+1h, T0+2h (equity 100, 110, 90), and another
    user's account with a later, higher one that no answer about the first includes."""
    account, other = await create_account(db), await create_account(db)
    for hours, equity in ((2, "90"), (0, "100"), (1, "110")):
        await _snapshot(db, account, T0 + hours * HOUR, equity)
    await _snapshot(db, other, T0 + 3 * HOUR, "999")
    return account, other


# --- accounts (internal) ----------------------------------------------------------------


async def test_lock_account_for_snapshot_finds_any_users_account(db: Database) -> None:
    account = await create_account(db)
    async with db.transaction() as session:
        found = await portfolio.lock_account_for_snapshot(session, account.id)
        assert found is not None
        assert (found.id, found.user_id) == (account.id, account.user_id)
        assert await portfolio.lock_account_for_snapshot(session, uuid.uuid4()) is None


async def test_the_snapshot_lock_holds_until_commit_on_postgresql(pg_db: Database) -> None:
    db = pg_db
    account = await create_account(db)
    await assert_holds_until_commit(
        db,
        lambda s: portfolio.lock_account_for_snapshot(s, account.id),
        lambda s: portfolio.lock_account_for_snapshot(s, account.id),
    )


async def test_active_account_ids_span_users_oldest_first(db: Database) -> None:
    accounts = [await create_account(db) for _ in range(3)]  # separate users
    async with db.transaction() as session:
        await session.execute(
            update(TradingAccount)
            .where(TradingAccount.id == accounts[1].id)
            .values(is_active=False)
        )
        for i, account in enumerate(accounts):
            await session.execute(
                update(TradingAccount)
                .where(TradingAccount.id == account.id)
                .values(created_at=T0 - i * HOUR)
            )
    async with db.read() as session:
        ids = await portfolio.active_account_ids(session)
    assert ids == [accounts[2].id, accounts[0].id]


# --- positions and trades ---------------------------------------------------------------


async def test_positions_of_are_the_accounts_by_symbol_closed_included(db: Database) -> None:
    account, other = await create_account(db), await create_account(db)
    await create_position(db, account=account, symbol="SOL/USD", quantity="2")
    await create_position(db, account=account, symbol="BTC/USD", quantity="0")
    await create_position(db, account=account, symbol="ETH/USD", quantity="1")
    await create_position(db, account=other, symbol="ADA/USD")
    async with db.read() as session:
        rows = await portfolio.positions_of(session, account.id, user_id=account.user_id)
        wrong_user = await portfolio.positions_of(session, account.id, user_id=other.user_id)
    assert [(p.symbol, p.quantity) for p in rows] == [
        ("BTC/USD", D(0)),
        ("ETH/USD", D(1)),
        ("SOL/USD", D(2)),
    ]
    assert wrong_user == []


async def test_sell_results_are_the_sells_in_the_window(db: Database) -> None:
    account, other = await create_account(db), await create_account(db)
    sell = await create_order(db, account=account, side="sell")
    buy = await create_order(db, account=account, side="buy")
    for hours, pnl in ((-1, "1"), (0, "2"), (1, "-3"), (2, "4")):
        await create_trade(
            db, order=sell, realized_pnl=pnl, fee="0.1", executed_at=T0 + hours * HOUR
        )
    await create_trade(db, order=buy, realized_pnl="0", fee="0.2", executed_at=T0)
    others = await create_order(db, account=other, side="sell")
    await create_trade(db, order=others, realized_pnl="50", executed_at=T0)
    async with db.read() as session:
        window = await portfolio.sell_results(
            session, account.id, user_id=account.user_id, start=T0, end=T0 + HOUR
        )
        since_ever = await portfolio.sell_results(
            session, account.id, user_id=account.user_id, start=None, end=T0 + HOUR
        )
        wrong_user = await portfolio.sell_results(
            session, account.id, user_id=other.user_id, start=None, end=T0 + 3 * HOUR
        )
    assert sorted(window) == [(D(-3), D("0.1")), (D(2), D("0.1"))]
    assert sorted(since_ever) == [(D(-3), D("0.1")), (D(1), D("0.1")), (D(2), D("0.1"))]
    assert wrong_user == []


# --- snapshots ----------------------------------------------------------------------------


async def test_add_snapshot_stores_the_valuation(db: Database) -> None:
    account = await create_account(db)
    row = await _snapshot(db, account, T0, "100")
    async with db.read() as session:
        (stored,) = await portfolio.snapshots_between(
            session, account.id, user_id=account.user_id, start=None, end=T0
        )
    assert stored.id == row.id
    assert (stored.user_id, stored.account_id, stored.taken_at) == (
        account.user_id,
        account.id,
        T0,
    )
    assert (stored.equity, stored.cash, stored.positions_value) == (D(100), D(90), D(10))
    assert (stored.realized_pnl, stored.unrealized_pnl, stored.fees) == (D(1), D(2), D("0.5"))


async def test_snapshots_between_is_the_window_oldest_first(db: Database) -> None:
    account, other = await _history(db)
    async with db.read() as session:
        window = await portfolio.snapshots_between(
            session, account.id, user_id=account.user_id, start=T0 + HOUR, end=T0 + 2 * HOUR
        )
        until = await portfolio.snapshots_between(
            session, account.id, user_id=account.user_id, start=None, end=T0 + HOUR
        )
        wrong_user = await portfolio.snapshots_between(
            session, account.id, user_id=other.user_id, start=None, end=T0 + 9 * HOUR
        )
    assert [s.equity for s in window] == [D(110), D(90)]
    assert [s.equity for s in until] == [D(100), D(110)]
    assert wrong_user == []


async def test_latest_snapshot_at_or_before(db: Database) -> None:
    account, other = await _history(db)
    async with db.read() as session:
        at = await portfolio.latest_snapshot_at_or_before(
            session, account.id, user_id=account.user_id, at=T0 + HOUR
        )
        between = await portfolio.latest_snapshot_at_or_before(
            session, account.id, user_id=account.user_id, at=T0 + 90 * timedelta(minutes=1)
        )
        before_any = await portfolio.latest_snapshot_at_or_before(
            session, account.id, user_id=account.user_id, at=T0 - HOUR
        )
        wrong_user = await portfolio.latest_snapshot_at_or_before(
            session, account.id, user_id=other.user_id, at=T0 + 9 * HOUR
        )
    assert at == (D(110), T0 + HOUR)
    assert between == (D(110), T0 + HOUR)
    assert before_any is None
    assert wrong_user is None


async def test_last_snapshot_at(db: Database) -> None:
    account, other = await _history(db)
    fresh = await create_account(db)
    async with db.read() as session:
        assert (
            await portfolio.last_snapshot_at(session, account.id, user_id=account.user_id)
            == T0 + 2 * HOUR
        )
        assert await portfolio.last_snapshot_at(session, fresh.id, user_id=fresh.user_id) is None
        assert await portfolio.last_snapshot_at(session, account.id, user_id=other.user_id) is None


async def test_equity_history_is_every_snapshot_oldest_first(db: Database) -> None:
    account, other = await _history(db)
    async with db.read() as session:
        history = await portfolio.equity_history(session, account.id, user_id=account.user_id)
        wrong_user = await portfolio.equity_history(session, account.id, user_id=other.user_id)
    assert history == [D(100), D(110), D(90)]
    assert wrong_user == []


async def test_equity_since_is_the_window_from_since_oldest_first(db: Database) -> None:
    account, other = await _history(db)
    async with db.read() as session:
        since = await portfolio.equity_since(
            session, account.id, user_id=account.user_id, since=T0 + HOUR
        )
        wrong_user = await portfolio.equity_since(
            session, account.id, user_id=other.user_id, since=T0 - HOUR
        )
    assert since == [(T0 + HOUR, D(110)), (T0 + 2 * HOUR, D(90))]
    assert wrong_user == []
