"""Queries on orders. Flush, never commit.

The user-facing reads (`find`, `lock`, `page`, `keyset_page`, `open_of`) filter on
`user_id`. The others are internal: the matching index's reload and the tick-driven
fill path span every user's open orders, and a client_order_id is looked up (or an
account's orders deleted, by a reset) in an account the caller already holds locked
under the user's id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, and_, delete, func, or_, select
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


async def keyset_page(
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
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Order]:
    """Up to `limit` of the user's orders newest first, (created_at, id) descending,
    strictly after `before` in that order (the last row of the previous page). One
    statement and no COUNT; rows inserted meanwhile are newer and never shift a page."""
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
    if before is not None:
        at, order_id = before
        query = query.where(
            or_(Order.created_at < at, and_(Order.created_at == at, Order.id < order_id))
        )
    query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def open_of(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
    symbol: str | None = None,
    side: str | None = None,
) -> list[Order]:
    """The user's open orders (pending or partial, untriggered stops included), oldest
    first, optionally of one account, symbol or side."""
    query = _filtered(
        user_id=user_id,
        account_id=account_id,
        status="open",
        symbol=symbol,
        side=side,
        agent_id=None,
        start=None,
        end=None,
    )
    return list((await session.execute(query.order_by(Order.created_at, Order.id))).scalars())


async def delete_of_account(session: AsyncSession, account_id: uuid.UUID) -> int:
    """Delete every order of the account (their trades go with them: delete those first
    to count them, see trades.delete_of_account); returns how many. Decisions that
    placed them stay: the link is on the order. Internal: `account_id` is an account
    the caller holds locked under the user's id."""
    result = await session.execute(
        delete(Order)
        .where(Order.account_id == account_id)
        .execution_options(synchronize_session=False)
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted


async def with_client_prefix(
    session: AsyncSession, account_id: uuid.UUID, prefix: str
) -> list[Order]:
    """The account's orders whose client_order_id starts with `prefix` (letters, digits
    and '-' only: no LIKE wildcards), in client_order_id order. Internal: `account_id`
    is one the caller has checked belongs to the user."""
    if not prefix.replace("-", "").isalnum():
        raise ValueError(f"not a plain prefix: {prefix!r}")
    query = (
        select(Order)
        .where(Order.account_id == account_id, Order.client_order_id.startswith(prefix))
        .order_by(Order.created_at, Order.client_order_id)
    )
    return list((await session.execute(query)).scalars())
