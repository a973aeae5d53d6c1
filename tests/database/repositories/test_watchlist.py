"""database/repositories/watchlist.py: each user's watched symbols, and only theirs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from database.connection import Database
from database.orm import WatchlistItem
from database.repositories import watchlist
from tests.factories import create_user

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


async def test_list_items_is_the_users_by_sort_order_age_then_symbol(db: Database) -> None:
    user, other = await create_user(db), await create_user(db)
    async with db.transaction() as session:
        for symbol in ("BTC/USD", "SOL/USD", "ETH/USD", "ADA/USD"):
            await watchlist.add_item(session, user_id=user.id, symbol=symbol)
        await watchlist.add_item(session, user_id=other.id, symbol="DOGE/USD")
    added = {"SOL/USD": T0, "BTC/USD": T0 + SECOND, "ADA/USD": T0 + SECOND, "ETH/USD": T0}
    async with db.transaction() as session:
        for symbol, created_at in added.items():
            await session.execute(
                update(WatchlistItem)
                .where(WatchlistItem.user_id == user.id, WatchlistItem.symbol == symbol)
                .values(created_at=created_at, sort_order=-1 if symbol == "ETH/USD" else 0)
            )
    async with db.read() as session:
        items = await watchlist.list_items(session, user_id=user.id)
        others = await watchlist.list_items(session, user_id=other.id)
    assert [i.symbol for i in items] == ["ETH/USD", "SOL/USD", "ADA/USD", "BTC/USD"]
    assert [i.symbol for i in others] == ["DOGE/USD"]


async def test_add_item_twice_is_an_integrity_error_for_that_user_only(db: Database) -> None:
    user, other = await create_user(db), await create_user(db)
    async with db.transaction() as session:
        item = await watchlist.add_item(session, user_id=user.id, symbol="BTC/USD")
    assert item.created_at is not None
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await watchlist.add_item(session, user_id=user.id, symbol="BTC/USD")
    async with db.transaction() as session:
        await watchlist.add_item(session, user_id=other.id, symbol="BTC/USD")
    async with db.read() as session:
        assert len(await watchlist.list_items(session, user_id=user.id)) == 1


async def test_remove_item_removes_the_users_item_only(db: Database) -> None:
    user, other = await create_user(db), await create_user(db)
    async with db.transaction() as session:
        await watchlist.add_item(session, user_id=user.id, symbol="BTC/USD")
        await watchlist.add_item(session, user_id=other.id, symbol="BTC/USD")
    async with db.transaction() as session:
        assert await watchlist.remove_item(session, user_id=user.id, symbol="ETH/USD") is False
        assert await watchlist.remove_item(session, user_id=user.id, symbol="BTC/USD") is True
        assert await watchlist.remove_item(session, user_id=user.id, symbol="BTC/USD") is False
    async with db.read() as session:
        assert await watchlist.list_items(session, user_id=user.id) == []
        assert [i.symbol for i in await watchlist.list_items(session, user_id=other.id)] == [
            "BTC/USD"
        ]
