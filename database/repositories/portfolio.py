"""The portfolio's queries: its snapshots, and the reads of positions, trades and
accounts that valuing and measuring an account needs (balances: repositories/accounts).

Queries on one account's rows take the owner's `user_id` as well as the account id, so a
caller that has the wrong pair sees nothing. The two account reads of the snapshot loop
(`lock_account_for_snapshot`, `active_account_ids`) are internal and span users: say so where used.
Flush, never commit: the service owns the transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from database.locking import for_update
from database.orm import PortfolioSnapshot, Position, Trade, TradingAccount
from models.enums import OrderSide

# --- accounts (internal: the snapshot loop spans users) -------------------------------


async def lock_account_for_snapshot(
    session: AsyncSession, account_id: uuid.UUID
) -> TradingAccount | None:
    """The account by primary key, locked until the transaction ends (PostgreSQL).

    Internal, not scoped to a user: the snapshot loop values accounts of every user.
    Orders lock the account first, so holding it the reads that follow see no fill
    half-way (the new position with the cash from before it).
    """
    # Select[Any]: locking.for_update's type variable is bound to a row tuple.
    query: Select[Any] = select(TradingAccount).where(TradingAccount.id == account_id)
    account: TradingAccount | None = (
        await session.execute(for_update(session, query))
    ).scalar_one_or_none()
    return account


async def active_account_ids(session: AsyncSession) -> list[uuid.UUID]:
    """The ids of every user's active accounts, oldest first.

    Internal, not scoped to a user: the background snapshot round over all accounts.
    """
    query = (
        select(TradingAccount.id)
        .where(TradingAccount.is_active.is_(True))
        .order_by(TradingAccount.created_at, TradingAccount.id)
    )
    return list((await session.execute(query)).scalars())


# --- positions and trades -------------------------------------------------------------


async def positions_of(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID
) -> list[Position]:
    """The account's positions by symbol, closed ones (quantity 0) included."""
    query = (
        select(Position)
        .where(Position.account_id == account_id, Position.user_id == user_id)
        .order_by(Position.symbol)
    )
    return list((await session.execute(query)).scalars())


async def sell_results(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    start: datetime | None,
    end: datetime,
) -> list[tuple[Decimal, Decimal]]:
    """(realized_pnl, fee) of each sell fill executed in [start, end] (`start` None:
    from the beginning), in no particular order."""
    query = select(Trade.realized_pnl, Trade.fee).where(
        Trade.account_id == account_id,
        Trade.user_id == user_id,
        Trade.side == OrderSide.SELL.value,
        Trade.executed_at <= end,
    )
    if start is not None:
        query = query.where(Trade.executed_at >= start)
    return [(pnl, fee) for pnl, fee in (await session.execute(query)).all()]


# --- snapshots ------------------------------------------------------------------------


async def add_snapshot(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    equity: Decimal,
    cash: Decimal,
    positions_value: Decimal,
    realized_pnl: Decimal,
    unrealized_pnl: Decimal,
    fees: Decimal,
    taken_at: datetime,
) -> PortfolioSnapshot:
    row = PortfolioSnapshot(
        user_id=user_id,
        account_id=account_id,
        equity=equity,
        cash=cash,
        positions_value=positions_value,
        realized_pnl=realized_pnl,
        unrealized_pnl=unrealized_pnl,
        fees=fees,
        taken_at=taken_at,
    )
    session.add(row)
    await session.flush()
    return row


async def snapshots_between(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    start: datetime | None,
    end: datetime,
) -> list[PortfolioSnapshot]:
    """The account's snapshots taken in [start, end] (`start` None: from the first),
    oldest first."""
    query = select(PortfolioSnapshot).where(
        PortfolioSnapshot.account_id == account_id,
        PortfolioSnapshot.user_id == user_id,
        PortfolioSnapshot.taken_at <= end,
    )
    if start is not None:
        query = query.where(PortfolioSnapshot.taken_at >= start)
    query = query.order_by(PortfolioSnapshot.taken_at, PortfolioSnapshot.id)
    return list((await session.execute(query)).scalars())


async def latest_snapshot_at_or_before(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID, at: datetime
) -> tuple[Decimal, datetime] | None:
    """(equity, taken_at) of the latest snapshot taken at `at` or before; None if none."""
    query = (
        select(PortfolioSnapshot.equity, PortfolioSnapshot.taken_at)
        .where(
            PortfolioSnapshot.account_id == account_id,
            PortfolioSnapshot.user_id == user_id,
            PortfolioSnapshot.taken_at <= at,
        )
        .order_by(PortfolioSnapshot.taken_at.desc())
        .limit(1)
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else (row.equity, row.taken_at)


async def last_snapshot_at(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID
) -> datetime | None:
    """When the account's latest snapshot was taken; None when it has none."""
    query = (
        select(PortfolioSnapshot.taken_at)
        .where(PortfolioSnapshot.account_id == account_id, PortfolioSnapshot.user_id == user_id)
        .order_by(PortfolioSnapshot.taken_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def equity_history(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID
) -> list[Decimal]:
    """The equity of every snapshot of the account, oldest first."""
    query = (
        select(PortfolioSnapshot.equity)
        .where(PortfolioSnapshot.account_id == account_id, PortfolioSnapshot.user_id == user_id)
        .order_by(PortfolioSnapshot.taken_at, PortfolioSnapshot.id)
    )
    return list((await session.execute(query)).scalars())


async def equity_since(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID, since: datetime
) -> list[tuple[datetime, Decimal]]:
    """(taken_at, equity) of the account's snapshots taken at `since` or later, oldest
    first."""
    query = (
        select(PortfolioSnapshot.taken_at, PortfolioSnapshot.equity)
        .where(
            PortfolioSnapshot.account_id == account_id,
            PortfolioSnapshot.user_id == user_id,
            PortfolioSnapshot.taken_at >= since,
        )
        .order_by(PortfolioSnapshot.taken_at, PortfolioSnapshot.id)
    )
    return [(taken_at, equity) for taken_at, equity in (await session.execute(query)).all()]


async def delete_snapshots_of_account(session: AsyncSession, account_id: uuid.UUID) -> int:
    """Delete an account's equity snapshots (a reset starts its curve again); returns how
    many. Internal: `account_id` is one the caller holds locked under the user's id."""
    result = await session.execute(
        delete(PortfolioSnapshot).where(PortfolioSnapshot.account_id == account_id)
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted


async def first_snapshot_since(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID, since: datetime
) -> Decimal | None:
    """Equity of the account's earliest snapshot taken at `since` or later; None if none."""
    query = (
        select(PortfolioSnapshot.equity)
        .where(
            PortfolioSnapshot.account_id == account_id,
            PortfolioSnapshot.user_id == user_id,
            PortfolioSnapshot.taken_at >= since,
        )
        .order_by(PortfolioSnapshot.taken_at)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()
