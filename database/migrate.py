"""Apply or revert migrations on a live async engine (the app's, or a test's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"

# Several instances may start at once against one PostgreSQL: the first to take this
# transaction-scoped lock migrates, the others wait and then find nothing to do.
_MIGRATION_LOCK_KEY = 7_261_943_001


def _serialize_migrations(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


def alembic_config() -> Config:
    return Config(str(ALEMBIC_INI))


class ForeignKeyViolation(RuntimeError):
    """A migration left rows pointing at rows that do not exist (SQLite check)."""


def _set_sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # Outside any transaction (SQLite ignores the pragma inside one): straight on the
    # driver's connection, which SQLAlchemy has not begun anything on yet.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise ForeignKeyViolation(
            f"the migration left {len(broken)} broken reference(s) in {', '.join(tables)}"
        )


async def _migrate(engine: AsyncEngine, step: Callable[[Connection], None]) -> None:
    """Run `step` in one transaction. On SQLite with foreign keys off: batch mode
    rebuilds a table by copying it and dropping the old one, and with foreign keys on
    that DROP deletes (CASCADE) or nulls (SET NULL) every row that refers to it: an
    upgrade would empty the orders, balances and trades of every account. The
    references are checked before the commit instead; a broken one rolls it back."""
    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            await conn.run_sync(_set_sqlite_foreign_keys, False)
        try:
            async with conn.begin():

                def run(connection: Connection) -> None:
                    _serialize_migrations(connection)
                    step(connection)
                    if sqlite:
                        _check_foreign_keys(connection)

                await conn.run_sync(run)
        finally:
            if sqlite:
                await conn.run_sync(_set_sqlite_foreign_keys, True)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    def step(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    await _migrate(engine, step)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    def step(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    await _migrate(engine, step)
