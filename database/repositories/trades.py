"""Queries on trades (fills). Flush, never commit.

Trades are mostly read by order: those functions take order ids the caller has already
authorised (an order it read with the user's id, or one the fill path holds locked),
so they do not filter on `user_id` again. `keyset_page`, the user's fills across
orders, does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import Trade


async def of_order(session: AsyncSession, order_id: uuid.UUID) -> list[Trade]:
    """The order's fills, oldest first. Internal: `order_id` is already authorised."""
    query = select(Trade).where(Trade.order_id == order_id).order_by(Trade.executed_at)
    return list((await session.execute(query)).scalars())


async def of_orders(session: AsyncSession, order_ids: Sequence[uuid.UUID]) -> list[Trade]:
    """The fills of all these orders, in no particular order (callers group and sort
    them). Internal: the ids come from a query filtered on the user."""
    query = select(Trade).where(Trade.order_id.in_(list(order_ids)))
    return list((await session.execute(query)).scalars())


def add(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    order_id: uuid.UUID,
    account_id: uuid.UUID,
    symbol: str,
    side: str,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    fee_asset: str,
    liquidity: str,
    realized_pnl: Decimal,
    executed_at: datetime,
) -> Trade:
    """A new fill; added, not flushed (its INSERT goes out with the next flush)."""
    trade = Trade(
        id=uuid.uuid4(),
        user_id=user_id,
        order_id=order_id,
        account_id=account_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        price=price,
        fee=fee,
        fee_asset=fee_asset,
        liquidity=liquidity,
        realized_pnl=realized_pnl,
        executed_at=executed_at,
    )
    session.add(trade)
    return trade


async def keyset_page(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
    symbol: str | None = None,
    side: str | None = None,
    order_id: uuid.UUID | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Trade]:
    """Up to `limit` of the user's fills newest first, (executed_at, id) descending,
    strictly after `before` in that order (the last row of the previous page); `start`
    inclusive, `end` exclusive on executed_at. One statement, no COUNT: the fills of one
    order share their executed_at, the id breaks the tie."""
    query = select(Trade).where(Trade.user_id == user_id)
    if account_id is not None:
        query = query.where(Trade.account_id == account_id)
    if symbol is not None:
        query = query.where(Trade.symbol == symbol)
    if side is not None:
        query = query.where(Trade.side == side)
    if order_id is not None:
        query = query.where(Trade.order_id == order_id)
    if start is not None:
        query = query.where(Trade.executed_at >= start)
    if end is not None:
        query = query.where(Trade.executed_at < end)
    if before is not None:
        at, trade_id = before
        query = query.where(
            or_(Trade.executed_at < at, and_(Trade.executed_at == at, Trade.id < trade_id))
        )
    query = query.order_by(Trade.executed_at.desc(), Trade.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def delete_of_account(session: AsyncSession, account_id: uuid.UUID) -> int:
    """Delete every fill of the account; returns how many. Internal: `account_id` is an
    account the caller holds locked under the user's id (an account reset)."""
    result = await session.execute(
        delete(Trade)
        .where(Trade.account_id == account_id)
        .execution_options(synchronize_session=False)
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted
