"""A check shared by the repository tests: does a query hold its rows (PostgreSQL)?"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from database.connection import Database

Locker = Callable[[AsyncSession], Awaitable[Any]]


async def _until_a_query_waits_on_a_lock(db: Database, waiting: asyncio.Task[None]) -> None:
    """Return once PostgreSQL shows a backend of this database blocked on a lock (or the
    waiter finished, which the caller then reports as not having waited)."""
    probe = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while not waiting.done():
        async with db.read() as session:
            if (await session.execute(probe)).scalar_one():
                return
        await asyncio.sleep(0.01)  # polling a condition, with the caller's deadline


async def assert_holds_until_commit(db: Database, first: Locker, second: Locker) -> None:
    """`second`, in another transaction, waits while `first`'s transaction is open and
    goes through once it commits."""
    locked, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with db.transaction() as session:
            await first(session)
            locked.set()
            await release.wait()

    async def waiter() -> None:
        async with db.transaction() as session:
            await second(session)

    held = asyncio.create_task(holder())
    await asyncio.wait_for(locked.wait(), 5)
    waiting = asyncio.create_task(waiter())
    await asyncio.wait_for(_until_a_query_waits_on_a_lock(db, waiting), 5)
    assert not waiting.done(), "the second lock did not wait for the first"
    release.set()
    await asyncio.wait_for(held, 5)
    await asyncio.wait_for(waiting, 5)
