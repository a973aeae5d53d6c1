from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from core.config import Settings
from core.version import __version__
from main_consolidated import create_app
from tests.api.conftest import running_app
from tests.conftest import pg_admin
from tests.redis_server import ThrowawayRedis

EMBEDDED_SERVICES = {
    "database",
    "event_bus",
    "cache",
    "websocket_hub",
    "users",
    "sample_data",
    "market_data",
    "paper_trading",
    "portfolio",
    "llm",
    "agents",
    "risk",
    "backtests",
    "candle_imports",
    "backtest_jobs",
    "strategies",
    "signals",
    "agent_backtests",
}


async def wait_for_status(
    client: httpx.AsyncClient, status: str, within: float = 20.0
) -> dict[str, Any]:
    """Poll /health until it reports `status`, within a deadline; returns that body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    body: dict[str, Any] = {}
    while loop.time() < deadline:
        body = (await client.get("/health")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"/health never became {status}: {body}")


class TestHealth:
    async def test_reports_every_service_healthy(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "healthy"
        assert body["version"] == __version__
        assert set(body["services"]) == EMBEDDED_SERVICES
        assert all(s["status"] == "healthy" for s in body["services"].values())
        assert body["timestamp"].endswith(("Z", "+00:00"))

    async def test_database_detail_names_the_backend(
        self, client: httpx.AsyncClient, app_settings: Settings
    ) -> None:
        body = (await client.get("/health")).json()
        dialect = "sqlite" if "sqlite" in app_settings.database_url else "postgresql"
        assert body["services"]["database"]["detail"] == f"{dialect} answers"
        assert body["services"]["database"]["data"]["latency_ms"] >= 0

    async def test_database_gone_returns_503(
        self, make_settings: Callable[..., Settings], fresh_postgres_url: str
    ) -> None:
        settings = make_settings(database={"url": fresh_postgres_url})
        async with running_app(create_app(settings)) as client:
            assert (await client.get("/health")).status_code == 200
            name = fresh_postgres_url.rsplit("/", 1)[1]
            await pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
            response = await client.get("/health")
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "unhealthy"
            assert body["services"]["database"]["status"] == "unhealthy"


class TestServicesEndpoint:
    async def test_lists_services_in_start_order_with_dependencies(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/api/v1/services")
        assert response.status_code == 200
        items = response.json()["items"]
        names = [i["name"] for i in items]
        assert set(names) == EMBEDDED_SERVICES
        for item in items:
            assert item["state"] == "running"
            for dep in item["depends_on"]:
                assert names.index(dep) < names.index(item["name"])
        by_name = {i["name"]: i for i in items}
        assert by_name["sample_data"]["depends_on"] == ["database", "users"]


class TestRedisDegradation:
    async def test_redis_stopped_degrades_and_restart_recovers(
        self,
        make_settings: Callable[..., Settings],
        fresh_sqlite_url: str,
        redis_available: bool,
        tmp_path: Path,
    ) -> None:
        redis = ThrowawayRedis(tmp_path)
        redis.start()
        try:
            settings = make_settings(
                database={"url": fresh_sqlite_url},
                redis={"url": redis.url, "health_interval_seconds": 0.05},
            )
            async with running_app(create_app(settings)) as client:
                body = await wait_for_status(client, "healthy")
                assert body["services"]["redis"]["status"] == "healthy"

                redis.stop()
                body = await wait_for_status(client, "degraded")
                assert body["services"]["redis"]["status"] != "healthy"
                # Still serving while degraded.
                assert (await client.get("/api/v1/services")).status_code == 200

                redis.start()
                body = await wait_for_status(client, "healthy")
                assert body["services"]["redis"]["status"] == "healthy"
        finally:
            redis.stop()
