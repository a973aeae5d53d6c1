"""Queries on strategies. Every query is scoped to the owner. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import Strategy


async def strategies_of(
    session: AsyncSession, *, user_id: uuid.UUID, active: bool | None = None
) -> list[Strategy]:
    """The user's strategies, oldest first."""
    query = select(Strategy).where(Strategy.user_id == user_id)
    if active is not None:
        query = query.where(Strategy.is_active.is_(active))
    return list(await session.scalars(query.order_by(Strategy.created_at, Strategy.id)))


async def watching(session: AsyncSession, *, timeframes: Sequence[str]) -> list[Strategy]:
    """Every user's active strategies of these timeframes (those with no symbols too: the
    symbols are JSON, filtered by the caller), oldest first. Not owner-scoped: the live
    signals serve every user's strategies."""
    query = select(Strategy).where(
        Strategy.is_active.is_(True), Strategy.timeframe.in_(list(timeframes))
    )
    return list(await session.scalars(query.order_by(Strategy.created_at, Strategy.id)))


async def named(
    session: AsyncSession, names: Sequence[str], *, user_id: uuid.UUID
) -> list[Strategy]:
    """The user's strategies of these names (those that exist), oldest first."""
    query = select(Strategy).where(Strategy.user_id == user_id, Strategy.name.in_(list(names)))
    return list(await session.scalars(query.order_by(Strategy.created_at, Strategy.id)))


async def find_strategy(
    session: AsyncSession, strategy_id: uuid.UUID, *, user_id: uuid.UUID
) -> Strategy | None:
    query = select(Strategy).where(Strategy.id == strategy_id, Strategy.user_id == user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def name_taken(
    session: AsyncSession,
    name: str,
    *,
    user_id: uuid.UUID,
    except_strategy_id: uuid.UUID | None = None,
) -> bool:
    query = select(Strategy.id).where(Strategy.user_id == user_id, Strategy.name == name)
    if except_strategy_id is not None:
        query = query.where(Strategy.id != except_strategy_id)
    return (await session.execute(query.limit(1))).first() is not None


async def add_strategy(session: AsyncSession, strategy: Strategy) -> Strategy:
    session.add(strategy)
    await session.flush()
    return strategy


async def delete_strategy(session: AsyncSession, strategy: Strategy) -> None:
    await session.delete(strategy)
    await session.flush()
