"""Queries on trades (fills). Flush, never commit.

Trades are read by order: every function takes order ids the caller has already
authorised (an order it read with the user's id, or one the fill path holds locked),
so none filters on `user_id` again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
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
