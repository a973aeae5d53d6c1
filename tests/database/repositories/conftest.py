from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from database.connection import Database


@pytest.fixture
async def pg_db(fresh_postgres_url: str) -> AsyncIterator[Database]:
    """PostgreSQL only: for row locks, which SQLite does not have (its BEGIN IMMEDIATE
    holds the whole database, so there is nothing per row to test)."""
    database = Database(fresh_postgres_url)
    yield database
    await database.dispose()
