"""Shared fixtures: real SQLite always, real PostgreSQL and Redis when reachable.

In CI (CI=true) or with CIVAL_REQUIRE_SERVICES=1 a missing PostgreSQL or Redis fails
the run; elsewhere its tests are skipped with the reason. Every database test gets a
fresh, migrated database cloned from a template made once per session, so tests are
isolated and still use real engines (concurrency tests need them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import create_async_engine

from core.config import Settings, load_settings
from database.connection import Database
from database.migrate import upgrade

REQUIRE_SERVICES = (
    os.environ.get("CI", "").lower() == "true" or os.environ.get("CIVAL_REQUIRE_SERVICES") == "1"
)
PG_HOST = os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_POSTGRES_PORT", "5432"))
PG_USER = os.environ.get("TEST_POSTGRES_USER", "postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _missing(what: str, reason: str) -> None:
    message = f"{what} not reachable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (required in CI)", pytrace=False)
    pytest.skip(message)


def _pg_dsn(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_dsn("postgres"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    try:
        _run(pg_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as e:
        _missing("PostgreSQL", str(e))
    return True


@pytest.fixture(scope="session")
def pg_template(postgres_available: bool) -> Iterator[str]:
    """A PostgreSQL database at migration head, used only as a template."""
    name = f"cival_tmpl_{uuid.uuid4().hex[:10]}"
    _run(pg_admin(f'CREATE DATABASE "{name}"'))

    async def migrate() -> None:
        engine = create_async_engine(pg_url(name))
        await upgrade(engine)
        await engine.dispose()

    _run(migrate())
    yield name
    _run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite_template") / "template.db"

    async def migrate() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db.engine)
        await db.dispose()

    _run(migrate())
    return path


@pytest.fixture
def fresh_postgres_url(pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own, dropped afterwards."""
    name = f"cival_test_{uuid.uuid4().hex[:12]}"
    _run(pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield pg_url(name)
    _run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "cival.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database on each backend: the test runs once per backend."""
    fixture = "fresh_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def redis_available() -> bool:
    async def ping() -> None:
        client = aioredis.from_url(REDIS_URL, socket_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        _run(ping())
    except (OSError, aioredis.RedisError) as e:
        _missing("Redis", str(e))
    return True


@pytest.fixture
def redis_url(redis_available: bool) -> str:
    return REDIS_URL


@pytest.fixture
def redis_namespace() -> str:
    """Keys and channels of this test only, so parallel runs never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_settings(tmp_path: Path) -> Any:
    """Settings for a test: data in tmp_path, no .env file, overrides as keywords."""

    def build(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("environment", "test")
        # The suite's expectations were written against one market: seed it, unless a
        # test is about the seed (a user's default is a fresh seed per run).
        market = overrides.setdefault("market_data", {})
        if isinstance(market, dict):
            market.setdefault("simulation_seed", 42)
        # Exact expectations step the book by hand: each step's book is the one given
        # (full recovery), unless a test is about recovery (the default refills half).
        paper = overrides.setdefault("paper", {})
        if isinstance(paper, dict):
            paper.setdefault("book_recovery", "1")
        return load_settings(**overrides)

    return build
