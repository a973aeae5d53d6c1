"""What differs between the two databases, written once: row locks, upserts, snapshots.

- `for_update`: `SELECT … FOR UPDATE` on PostgreSQL. SQLite has no row locks; its write
  transactions begin with `BEGIN IMMEDIATE` (database/connection.py), which holds the
  whole database, so the same query runs without the clause there.
- `upsert`: `INSERT … ON CONFLICT (keys) DO UPDATE`, in each dialect's own construct.
- `consistent_reads`: a read whose statements all see one committed state. SQLite's
  transactions do already; PostgreSQL's READ COMMITTED would not, so the session moves to
  REPEATABLE READ there.

Repositories call these; nothing outside `database/` needs to know the dialect.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

Query = TypeVar("Query", bound=Select[Any])


def is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def for_update(session: AsyncSession, query: Query, **options: Any) -> Query:
    """`query` holding the rows it reads until the transaction ends (PostgreSQL)."""
    return query.with_for_update(**options) if is_postgresql(session) else query


def upsert(
    session: AsyncSession, table: Any, keys: tuple[str, ...], rows: list[dict[str, Any]]
) -> Executable:
    """INSERT the rows; on a conflict on `keys`, UPDATE every column but the id,
    `created_at` and the keys themselves to the new row's values."""
    insert = pg_insert if is_postgresql(session) else sqlite_insert
    statement = insert(table)
    kept = {"id", "created_at", *keys}
    changes = {name: statement.excluded[name] for name in rows[0] if name not in kept}
    upserted: Executable = statement.on_conflict_do_update(index_elements=list(keys), set_=changes)
    return upserted


async def consistent_reads(session: AsyncSession) -> None:
    """Make the session's reads see one snapshot (call before its first statement)."""
    if is_postgresql(session):
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
