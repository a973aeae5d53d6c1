from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from core.config import Settings
from main_consolidated import create_app

AppFactory = Callable[..., Any]


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with its real registry started, behind an in-memory HTTP client."""
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cival.test") as c:
            yield c


@pytest.fixture
def app_settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    """Settings on a fresh migrated database of each backend, no Redis."""
    return make_settings(database={"url": database_url}, redis={"url": ""})


@pytest.fixture
async def client(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(app_settings)) as c:
        yield c
