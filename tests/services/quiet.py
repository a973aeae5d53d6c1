"""The real services with nothing running on their own: no Redis, no market stream, no
agent scheduler, no risk monitor, so a test drives each step itself. Shared by the
risk, strategies and backtests tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from core.config import Settings
from services.container import Services, build_services


def quiet_settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
        agents={"scheduler_enabled": False},
        risk={"monitor_enabled": False},
    )


@asynccontextmanager
async def started_at(settings: Settings, clock: datetime) -> AsyncIterator[Services]:
    """The services' registry started with the market's clock held at `clock`."""
    built = build_services(settings)
    built.market_data._clock = lambda: clock
    await built.registry.start()
    try:
        yield built
    finally:
        await built.registry.stop()


# The market's clock in the strategies and backtests tests: its backfilled day before it
# is their history.
CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    """The quiet services on the test's database, the market's clock held at CLOCK."""
    async with started_at(quiet_settings(make_settings, database_url), CLOCK) as built:
        yield built
