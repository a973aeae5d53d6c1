"""The engine, the sessionmaker and the one way to open a unit of work.

SQLite: WAL, foreign keys on, a busy timeout, and `BEGIN IMMEDIATE` for write
transactions, so two writers never interleave a read-check-write (SQLite ignores
`SELECT ... FOR UPDATE`). PostgreSQL: asyncpg with a pool (no pre-ping unless asked,
see `Database`); callers add row locks.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Which BEGIN the next SQLite transaction on this task emits.
_sqlite_begin: contextvars.ContextVar[str] = contextvars.ContextVar("sqlite_begin", default="BEGIN")


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(_sqlite_begin.get())


class Database:
    """Owns one engine; `transaction()` is the unit of work every service uses."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 10,
        max_overflow: int = 20,
        pool_pre_ping: bool = False,
        pool_recycle: int = 1800,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        # No pre-ping by default: it costs a round trip per checkout. A connection the
        # server dropped (a restart) then fails the one request that draws it, answered
        # 503 (core/middleware.py), and the pool discards it; `pool_recycle` retires
        # connections older than that many seconds (-1: never).
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": pool_pre_ping}
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_recycle=pool_recycle)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back if it raises.

        A write transaction on SQLite takes the write lock at BEGIN (IMMEDIATE), so its
        reads and its conditional writes see no other writer in between.
        """
        token = _sqlite_begin.set("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            async with self.sessionmaker() as session, session.begin():
                yield session
        finally:
            _sqlite_begin.reset(token)

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read-only unit of work (no write lock on SQLite)."""
        return self.transaction(write=False)

    async def ping(self) -> float:
        """Round trip of `SELECT 1` in milliseconds."""
        started = time.perf_counter()
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000

    async def dispose(self) -> None:
        await self.engine.dispose()
