"""CacheService on Redis and in-process: values, expiry, locks, and the degraded mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from core.service_registry import HealthStatus
from services.infra.cache import CacheService, LockNotAcquiredError
from services.infra.redis import RedisService
from tests.services.infra.test_redis import (
    WAIT,
    ThrowawayRedis,
    delete_namespace,
    free_port,
    make_service,
    state_changes,
)


class FakeClock:
    """Monotonic time the test moves by hand, for the in-process expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "redis"])
def cache_redis_url(request: pytest.FixtureRequest) -> str:
    """'' for the in-process mode, the shared server's URL for the Redis mode."""
    if request.param == "local":
        return ""
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def cache(
    cache_redis_url: str, clock: FakeClock, redis_namespace: str
) -> AsyncIterator[CacheService]:
    """The same tests on both modes."""
    redis: RedisService | None = None
    if cache_redis_url:
        redis = make_service(cache_redis_url, redis_namespace)
        await redis.start()
    service = CacheService(redis, clock=clock)
    await service.start()
    yield service
    await service.stop()
    if redis is not None:
        await redis.stop()
        await delete_namespace(cache_redis_url, redis_namespace)


class TestValues:
    async def test_set_then_get_returns_the_bytes(self, cache: CacheService) -> None:
        await cache.set("quote:BTC", b"\x00price")
        assert await cache.get("quote:BTC") == b"\x00price"

    async def test_missing_key_is_none(self, cache: CacheService) -> None:
        assert await cache.get("nothing") is None

    async def test_delete_says_whether_the_key_was_there(self, cache: CacheService) -> None:
        await cache.set("k", b"v")
        assert await cache.delete("k") is True
        assert await cache.delete("k") is False
        assert await cache.get("k") is None

    async def test_json_round_trip_keeps_decimals_as_strings(self, cache: CacheService) -> None:
        await cache.set_json("p", {"cash": Decimal("10.50"), "n": [1, 2]})
        assert await cache.get_json("p") == {"cash": "10.50", "n": [1, 2]}

    async def test_mode_and_health(self, cache: CacheService) -> None:
        health = await cache.health()
        assert health.status is HealthStatus.HEALTHY
        assert health.detail in {"redis", "in-process"}
        assert cache.mode == ("redis" if health.detail == "redis" else "local")


class TestTtl:
    async def test_ttl_is_set_and_reported(self, cache: CacheService) -> None:
        await cache.set("short", b"v", ttl=30)
        remaining = await cache.ttl("short")
        assert remaining is not None
        assert 0 < remaining <= 30

    async def test_no_ttl_means_no_expiry(self, cache: CacheService) -> None:
        await cache.set("forever", b"v")
        assert await cache.ttl("forever") is None

    async def test_non_positive_ttl_is_refused(self, cache: CacheService) -> None:
        with pytest.raises(ValueError, match="ttl"):
            await cache.set("k", b"v", ttl=0)

    async def test_local_value_expires(self, clock: FakeClock) -> None:
        cache = CacheService(None, clock=clock)
        await cache.set("k", b"v", ttl=5)
        clock.now += 4.9
        assert await cache.get("k") == b"v"
        clock.now += 0.2
        assert await cache.get("k") is None
        assert await cache.ttl("k") is None

    async def test_local_store_is_bounded(self) -> None:
        cache = CacheService(None, local_max_entries=2)
        for key in ("a", "b", "c"):
            await cache.set(key, key.encode())
        assert [await cache.get(k) for k in ("a", "b", "c")] == [None, b"b", b"c"]


class TestLock:
    async def test_second_holder_waits_for_the_first(self, cache: CacheService) -> None:
        async with cache.lock("rebalance", timeout=30):
            with pytest.raises(LockNotAcquiredError):
                async with cache.lock("rebalance", timeout=30, blocking_timeout=0.05):
                    pytest.fail("acquired a lock that was held")
        async with cache.lock("rebalance", timeout=30, blocking_timeout=WAIT):
            pass

    async def test_different_names_do_not_exclude(self, cache: CacheService) -> None:
        async with (
            cache.lock("a", timeout=30, blocking_timeout=0.05),
            cache.lock("b", timeout=30, blocking_timeout=0.05),
        ):
            pass

    async def test_waiter_gets_the_lock_once_released(self, cache: CacheService) -> None:
        order: list[str] = []
        holding = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with cache.lock("x", timeout=30):
                order.append("first")
                holding.set()
                await release.wait()
                order.append("first done")

        async def second() -> None:
            await holding.wait()
            async with cache.lock("x", timeout=30, blocking_timeout=WAIT):
                order.append("second")

        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await asyncio.wait_for(holding.wait(), WAIT)
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert order == ["first", "first done", "second"]

    async def test_redis_lock_excludes_another_process(
        self, redis_url: str, redis_namespace: str
    ) -> None:
        services = [make_service(redis_url, redis_namespace) for _ in range(2)]
        for service in services:
            await service.start()
        one, two = CacheService(services[0]), CacheService(services[1])
        try:
            async with one.lock("settle", timeout=30):
                with pytest.raises(LockNotAcquiredError, match="another process"):
                    async with two.lock("settle", timeout=30, blocking_timeout=0.2):
                        pytest.fail("two processes held the same lock")
            async with two.lock("settle", timeout=30, blocking_timeout=WAIT):
                pass
        finally:
            for service in services:
                await service.stop()
            await delete_namespace(redis_url, redis_namespace)


class TestDegraded:
    async def test_unreachable_redis_serves_locally_and_reports_degraded(
        self, redis_namespace: str
    ) -> None:
        redis = make_service(f"redis://127.0.0.1:{free_port()}/0", redis_namespace)
        await redis.start()
        cache = CacheService(redis)
        await cache.start()
        try:
            health = await cache.health()
            assert health.status is HealthStatus.DEGRADED
            assert "redis unavailable" in health.detail
            assert cache.mode == "local"
            await cache.set("k", b"v", ttl=10)
            assert await cache.get("k") == b"v"
            async with cache.lock("k", timeout=5):
                with pytest.raises(LockNotAcquiredError):
                    async with cache.lock("k", timeout=5, blocking_timeout=0.05):
                        pytest.fail("acquired a lock that was held")
        finally:
            await cache.stop()
            await redis.stop()

    async def test_local_stand_in_is_emptied_when_redis_returns(self, redis_namespace: str) -> None:
        server = ThrowawayRedis()
        await server.start()
        redis = make_service(server.url, redis_namespace)
        await redis.start()
        cache = CacheService(redis)
        await cache.start()
        changes = state_changes(redis)
        try:
            await server.kill()
            assert await asyncio.wait_for(changes.get(), WAIT) is False
            await cache.set("during-outage", b"stale")
            assert await cache.get("during-outage") == b"stale"

            await server.start()
            assert await asyncio.wait_for(changes.get(), WAIT) is True
            assert cache.mode == "redis"
            assert await cache.get("during-outage") is None
            assert (await cache.health()).data["local_entries"] == 0
        finally:
            await cache.stop()
            await redis.stop()
            await server.kill()
