"""Queries on orders. Flush, never commit.

The user-facing reads (`find`, `lock`, `page`) filter on `user_id`. The others are
internal: the matching index's reload and the tick-driven fill path span every user's
open orders, and a client_order_id is looked up in an account the caller already holds
locked under the user's id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from database.locking import for_update
from database.orm import OPEN_ORDER_STATUSES, Order

# "open" and "closed" group statuses; any other value is one status.
OrderListStatus = Literal["open", "closed", "filled", "cancelled", "rejected", "partial", "pending"]

_OPEN = [s.value for s in OPEN_ORDER_STATUSES]


async def open_orders(session: AsyncSession) -> list[Order]:
    """Every open order of every user, oldest first (time priority). Internal: the
    matching index's reload, which spans users."""
    query = select(Order).where(Order.status.in_(_OPEN)).order_by(Order.created_at, Order.id)
    return list((await session.execute(query)).scalars())


async def by_client_id(
    session: AsyncSession, account_id: uuid.UUID, client_order_id: str | None
) -> Order | None:
    """The account's order with this client_order_id (unique per account), if any.
    Internal: `account_id` is one the caller holds locked under the user's id."""
    query = select(Order).where(
        Order.account_id == account_id, Order.client_order_id == client_order_id
    )
    return (await session.execute(query)).scalar_one_or_none()


def add(session: AsyncSession, order: Order) -> Order:
    """A new order; added, not flushed: its INSERT goes out with the transaction's next
    flush (where a reused client_order_id fails with IntegrityError)."""
    session.add(order)
    return order


async def get_by_id(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    """The order by primary key (the session's copy if it has one). Internal: the fill
    path's resync of an order it matched, which spans users."""
    return await session.get(Order, order_id)


async def lock_by_id(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    """The order, its row locked until the transaction ends (PostgreSQL) and re-read
    even if the session holds it. Internal: the tick-driven fill path, which spans
    users; lock the account first (the lock order of every path)."""
    # Select[Any]: locking.for_update's type variable is bound to a row tuple.
    query: Select[Any] = (
        select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
    )
    order: Order | None = (await session.execute(for_update(session, query))).scalar_one_or_none()
    return order


async def find(session: AsyncSession, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order | None:
    """The user's order `order_id`; None for another user's (ids never leak)."""
    query = select(Order).where(Order.id == order_id, Order.user_id == user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def lock(session: AsyncSession, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order | None:
    """`find`, re-read and its row locked until the transaction ends (PostgreSQL)."""
    query: Select[Any] = (
        select(Order)
        .where(Order.id == order_id, Order.user_id == user_id)
        .execution_options(populate_existing=True)
    )
    order: Order | None = (await session.execute(for_update(session, query))).scalar_one_or_none()
    return order


def _filtered(
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None,
    status: OrderListStatus | None,
    symbol: str | None,
    side: str | None,
    agent_id: uuid.UUID | None,
    start: datetime | None,
    end: datetime | None,
) -> Select[Any]:
    query = select(Order).where(Order.user_id == user_id)
    if account_id is not None:
        query = query.where(Order.account_id == account_id)
    if status == "open":
        query = query.where(Order.status.in_(_OPEN))
    elif status == "closed":
        query = query.where(Order.status.not_in(_OPEN))
    elif status is not None:
        query = query.where(Order.status == status)
    if symbol is not None:
        query = query.where(Order.symbol == symbol)
    if side is not None:
        query = query.where(Order.side == side)
    if agent_id is not None:
        query = query.where(Order.agent_id == agent_id)
    if start is not None:
        query = query.where(Order.created_at >= start)
    if end is not None:
        query = query.where(Order.created_at < end)
    return query


async def page(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
    status: OrderListStatus | None = None,
    symbol: str | None = None,
    side: str | None = None,
    agent_id: uuid.UUID | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[Order]]:
    """(how many of the user's orders match, one page of them newest first). Two
    statements, the count first; `start` inclusive, `end` exclusive on created_at."""
    query = _filtered(
        user_id=user_id,
        account_id=account_id,
        status=status,
        symbol=symbol,
        side=side,
        agent_id=agent_id,
        start=start,
        end=end,
    )
    total: int = (
        await session.execute(select(func.count()).select_from(query.subquery()))
    ).scalar_one()
    rows: list[Order] = list(
        (
            await session.execute(
                query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit).offset(offset)
            )
        ).scalars()
    )
    return total, rows
