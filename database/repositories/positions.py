"""Queries on positions, written by an order's ledger. Flush, never commit."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from database.locking import for_update
from database.orm import Position

_ZERO = Decimal(0)


async def lock_position(
    session: AsyncSession, account_id: uuid.UUID, symbol: str
) -> Position | None:
    """The account's position in `symbol`, its row locked until the transaction ends
    (PostgreSQL), re-read even if the session holds it; None when there is none yet.
    Internal: `account_id` is an account the caller holds locked (authorised)."""
    # Select[Any]: locking.for_update's type variable is bound to a row tuple.
    query: Select[Any] = (
        select(Position)
        .where(Position.account_id == account_id, Position.symbol == symbol)
        .execution_options(populate_existing=True)
    )
    position: Position | None = (
        await session.execute(for_update(session, query))
    ).scalar_one_or_none()
    return position


def add_empty(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    symbol: str,
) -> Position:
    """A flat position (all zero) in `symbol`; added, not flushed (its INSERT goes out
    with the transaction's next flush)."""
    position = Position(
        id=uuid.uuid4(),
        user_id=user_id,
        account_id=account_id,
        agent_id=agent_id,
        symbol=symbol,
        quantity=_ZERO,
        avg_price=_ZERO,
        cost_basis=_ZERO,
        entry_fees=_ZERO,
        realized_pnl=_ZERO,
    )
    session.add(position)
    return position
