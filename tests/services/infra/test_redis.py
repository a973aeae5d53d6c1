"""RedisService: start rules, namespacing, and the monitor across a real outage.

Outages use a throwaway `redis-server` on a free port, started and killed here, never
the shared server. `ThrowawayRedis` and `delete_namespace` are reused by the event bus
and cache tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from core.service_registry import HealthStatus
from services.infra.redis import RedisService

WAIT = 10.0  # upper bound for anything awaited; never a measured duration


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayRedis:
    """A private redis-server that a test may kill and restart on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not on PATH")
        self.binary = binary
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await asyncio.wait_for(self._wait_ready(), WAIT)
        self._drain = asyncio.create_task(self._discard_output())

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                raise RuntimeError("redis-server exited before it was ready")
            if b"Ready to accept connections" in line:
                return

    async def _discard_output(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while await self._proc.stdout.read(65536):
            pass

    async def kill(self) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            self._proc.kill()
        await self._proc.wait()
        if self._drain is not None:
            await self._drain
        self._proc = None


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    await server.start()
    yield server
    await server.kill()


async def delete_namespace(url: str, namespace: str) -> None:
    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def make_service(url: str, namespace: str, *, interval: float = 0.05) -> RedisService:
    return RedisService(
        url, namespace=namespace, health_interval_seconds=interval, socket_timeout_seconds=0.5
    )


@contextlib.asynccontextmanager
async def started(service: RedisService) -> AsyncIterator[RedisService]:
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def state_changes(service: RedisService) -> asyncio.Queue[bool]:
    changes: asyncio.Queue[bool] = asyncio.Queue()
    service.on_state_change(changes.put_nowait)
    return changes


class TestStart:
    async def test_unusable_url_fails_start(self, redis_namespace: str) -> None:
        service = make_service("http://127.0.0.1:6379", redis_namespace)
        with pytest.raises(ValueError, match="scheme"):
            await service.start()

    async def test_unreachable_server_starts_degraded(self, redis_namespace: str) -> None:
        service = make_service(f"redis://127.0.0.1:{free_port()}/0", redis_namespace)
        async with started(service):
            assert service.available is False
            health = await service.health()
            assert health.status is HealthStatus.DEGRADED
            assert "redis unavailable" in health.detail
            assert "ConnectionError" in health.detail

    async def test_reachable_server_is_healthy(self, redis_url: str, redis_namespace: str) -> None:
        async with started(make_service(redis_url, redis_namespace)) as service:
            assert service.available is True
            health = await service.health()
            assert health.status is HealthStatus.HEALTHY
            assert health.data["namespace"] == redis_namespace
            assert await service.client.ping() is True

    async def test_health_never_shows_the_password(self, redis_namespace: str) -> None:
        service = make_service(f"redis://user:hunter2@127.0.0.1:{free_port()}/0", redis_namespace)
        async with started(service):
            health = await service.health()
        assert "hunter2" not in str(health)

    async def test_namespace_with_glob_is_refused(self) -> None:
        with pytest.raises(ValueError, match="namespace"):
            RedisService("redis://127.0.0.1:6379", namespace="a*b")

    async def test_client_before_start_is_an_error(self, redis_namespace: str) -> None:
        with pytest.raises(RuntimeError, match="not started"):
            _ = make_service("redis://127.0.0.1:6379", redis_namespace).client


class TestKey:
    def test_key_is_prefixed_with_the_namespace(self) -> None:
        service = RedisService("redis://127.0.0.1:6379", namespace="cival")
        assert service.key("events:seq") == "cival:events:seq"


class TestMonitor:
    async def test_outage_degrades_and_recovery_notifies(
        self, throwaway_redis: ThrowawayRedis, redis_namespace: str
    ) -> None:
        async with started(make_service(throwaway_redis.url, redis_namespace)) as service:
            changes = state_changes(service)
            assert (await service.health()).status is HealthStatus.HEALTHY

            await throwaway_redis.kill()
            assert await asyncio.wait_for(changes.get(), WAIT) is False
            assert service.available is False
            health = await service.health()
            assert health.status is HealthStatus.DEGRADED
            assert service.reason in health.detail
            assert service.reason

            await throwaway_redis.start()
            assert await asyncio.wait_for(changes.get(), WAIT) is True
            assert (await service.health()).status is HealthStatus.HEALTHY
            await service.client.set(service.key("k"), b"v")
            assert await service.client.get(service.key("k")) == b"v"

    async def test_reported_error_is_checked_before_the_next_interval(
        self, throwaway_redis: ThrowawayRedis, redis_namespace: str
    ) -> None:
        # An interval far beyond WAIT: only report_error can make the change arrive in time.
        service = make_service(throwaway_redis.url, redis_namespace, interval=60.0)
        async with started(service):
            changes = state_changes(service)
            await throwaway_redis.kill()
            service.report_error(ConnectionError("seen by a user of the client"))
            assert await asyncio.wait_for(changes.get(), WAIT) is False

    async def test_failing_listener_does_not_stop_the_others(
        self, throwaway_redis: ThrowawayRedis, redis_namespace: str
    ) -> None:
        async with started(make_service(throwaway_redis.url, redis_namespace)) as service:

            def broken(available: bool) -> None:
                raise RuntimeError("listener bug")

            service.on_state_change(broken)
            changes = state_changes(service)
            await throwaway_redis.kill()
            assert await asyncio.wait_for(changes.get(), WAIT) is False
            assert (await service.health()).data["monitor_crashes"] == 0

    async def test_removed_listener_is_not_called(
        self, throwaway_redis: ThrowawayRedis, redis_namespace: str
    ) -> None:
        async with started(make_service(throwaway_redis.url, redis_namespace)) as service:
            removed: list[bool] = []
            service.on_state_change(removed.append)()
            changes = state_changes(service)
            await throwaway_redis.kill()
            assert await asyncio.wait_for(changes.get(), WAIT) is False
            assert removed == []
