"""Queries on the symbols a user watches. Every one is scoped to the user.
Flush, never commit: the service owns the transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import WatchlistItem


async def list_items(session: AsyncSession, *, user_id: uuid.UUID) -> list[WatchlistItem]:
    """The user's items by sort order, then oldest first, then by symbol."""
    query = (
        select(WatchlistItem)
        .where(WatchlistItem.user_id == user_id)
        .order_by(WatchlistItem.sort_order, WatchlistItem.created_at, WatchlistItem.symbol)
    )
    return list(await session.scalars(query))


async def add_item(session: AsyncSession, *, user_id: uuid.UUID, symbol: str) -> WatchlistItem:
    """Adds the symbol; one the user already watches raises IntegrityError on the flush."""
    item = WatchlistItem(user_id=user_id, symbol=symbol)
    session.add(item)
    await session.flush()
    return item


async def remove_item(session: AsyncSession, *, user_id: uuid.UUID, symbol: str) -> bool:
    """Deletes the user's item for `symbol`; False when the user was not watching it."""
    result = await session.execute(
        delete(WatchlistItem).where(
            WatchlistItem.user_id == user_id, WatchlistItem.symbol == symbol
        )
    )
    return bool(getattr(result, "rowcount", 0))
