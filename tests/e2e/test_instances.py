"""Several instances as one service, and both start commands on both backends."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import REDIS_URL, pg_admin, pg_url
from tests.e2e.conftest import WAIT, _run, subscriber
from tests.e2e.server import LiveServer, running
from tests.e2e.test_websocket import market_buy, of_order


@pytest.fixture
def shared_postgres(postgres_available: bool, redis_available: bool) -> Iterator[dict[str, str]]:
    """One empty PostgreSQL database and one Redis namespace for several instances."""
    name = f"cival_e2e_{uuid.uuid4().hex[:12]}"
    _run(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield {
            "DATABASE_URL": pg_url(name),
            "REDIS_URL": REDIS_URL,
            "REDIS_NAMESPACE": f"e2e-{uuid.uuid4().hex[:10]}",
        }
    finally:
        _run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
@pytest.mark.redis
async def test_an_order_on_one_instance_reaches_a_client_of_another(
    shared_postgres: dict[str, str], tmp_path: Path
) -> None:
    with (
        running(tmp_path / "a", how="uvicorn", **shared_postgres) as a,
        running(tmp_path / "b", how="script", **shared_postgres) as b,
    ):
        async with subscriber(b, "trades") as on_b:
            async with httpx.AsyncClient(base_url=a.url, timeout=WAIT) as http_a:
                order = await market_buy(http_a)
            frame = await on_b.until(of_order(order["id"]))
        assert frame["channel"] == "trades"
        assert frame["data"]["account_id"] == order["account_id"]
    a.assert_clean_log()
    b.assert_clean_log()


@pytest.fixture(params=["sqlite", "postgres"])
def instance_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    env: dict[str, str] = request.getfixturevalue("shared_postgres")
    return env


@pytest.mark.parametrize("how", ["script", "uvicorn"])
async def test_each_start_command_serves_http_and_websocket(
    how: str, instance_env: dict[str, str], tmp_path: Path
) -> None:
    env = instance_env
    with running(tmp_path / "data", how=how, **env) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=WAIT) as http:
            health = (await http.get("/health")).json()
            assert health["status"] == "healthy", health
        async with connect(live.ws_url, ping_interval=None, open_timeout=WAIT) as ws:
            await ws.send('{"type": "ping"}')
            assert await ws.recv() == '{"type":"pong"}'
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit says what ended it.
    assert live.stop() in (0, -signal.SIGTERM)
    assert any(e.get("event") == "cival_stopped" for e in live.log_events())
    live.assert_clean_log()


def test_a_bad_setting_stops_the_start_with_the_variable_named(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", how="uvicorn", env={"DATABASE_URL": "mysql://x"})
    with pytest.raises(RuntimeError, match="exited") as failed:
        server.start()
    assert "DATABASE_URL" in str(failed.value)
