"""Cache and locks: Redis when configured and reachable, in-process otherwise.

Values are bytes (`get`/`set`) or JSON (`get_json`/`set_json`, Decimals as strings).
Without Redis everything lives in this process. With Redis configured but unreachable
the service is degraded and serves from its in-process stand-in, which is emptied when
Redis returns so nothing stale outlives the outage. `lock()` always takes an in-process
lock per name and, while Redis is reachable, a Redis lock on top, so it excludes other
processes when it can and this process's tasks always.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import orjson
import structlog
from redis.asyncio.lock import Lock as RedisLock
from redis.exceptions import LockError, RedisError

from core.service_registry import ServiceHealth
from models.events import dumps
from services.infra.redis import RedisService

log = structlog.get_logger(__name__)


class LockNotAcquiredError(TimeoutError):
    """`lock()` waited `blocking_timeout` seconds and someone else still held it."""


class _LocalStore:
    """Bytes with optional expiry, bounded by evicting the least recently written."""

    def __init__(self, *, max_entries: int, clock: Callable[[], float]) -> None:
        self._items: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock

    def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, expires_at = item
        if expires_at is not None and expires_at <= self._clock():
            del self._items[key]
            return None
        return value

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._items.pop(key, None)
        self._items[key] = (value, None if ttl is None else self._clock() + ttl)
        while len(self._items) > self._max_entries:
            self._items.popitem(last=False)

    def delete(self, key: str) -> bool:
        return self.get(key) is not None and self._items.pop(key, None) is not None

    def ttl(self, key: str) -> float | None:
        if self.get(key) is None:
            return None
        expires_at = self._items[key][1]
        return None if expires_at is None else expires_at - self._clock()

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class _LocalLocks:
    """One asyncio.Lock per name, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, name: str, blocking_timeout: float | None) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            try:
                await asyncio.wait_for(lock.acquire(), blocking_timeout)
            except TimeoutError:
                raise LockNotAcquiredError(f"lock {name!r} is held elsewhere") from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class CacheService:
    def __init__(
        self,
        redis: RedisService | None,
        *,
        local_max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._local = _LocalStore(max_entries=local_max_entries, clock=clock)
        self._locks = _LocalLocks()
        self._remove_listener: Callable[[], None] | None = None
        self.redis_errors = 0

    @property
    def mode(self) -> str:
        """'redis' while Redis serves the cache, 'local' otherwise."""
        return "redis" if self._redis is not None and self._redis.available else "local"

    async def start(self) -> None:
        if self._redis is not None:
            self._remove_listener = self._redis.on_state_change(self._on_redis_state)

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    async def health(self) -> ServiceHealth:
        data = {"local_entries": len(self._local), "redis_errors": self.redis_errors}
        if self._redis is None:
            return ServiceHealth.healthy("in-process", **data)
        if not self._redis.available:
            return ServiceHealth.degraded(
                f"redis unavailable, caching in this process only: {self._redis.reason}", **data
            )
        return ServiceHealth.healthy("redis", **data)

    async def get(self, key: str) -> bytes | None:
        if self._use_redis() and self._redis is not None:
            try:
                value = await self._redis.client.get(self._redis.key(f"cache:{key}"))
            except (RedisError, OSError) as e:
                self._redis_failed(e)
            else:
                # The client never decodes responses, so a value is always bytes.
                return cast(bytes | None, value)
        return self._local.get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store bytes, expiring after `ttl` seconds when given (> 0)."""
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        if self._use_redis() and self._redis is not None:
            try:
                await self._redis.client.set(
                    self._redis.key(f"cache:{key}"),
                    value,
                    px=None if ttl is None else max(1, round(ttl * 1000)),
                )
            except (RedisError, OSError) as e:
                self._redis_failed(e)
            else:
                return
        self._local.set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        """Remove the key; True if it was there."""
        if self._use_redis() and self._redis is not None:
            try:
                removed: int = await self._redis.client.delete(self._redis.key(f"cache:{key}"))
            except (RedisError, OSError) as e:
                self._redis_failed(e)
            else:
                return removed > 0
        return self._local.delete(key)

    async def ttl(self, key: str) -> float | None:
        """Seconds until the key expires; None if it is missing or never expires."""
        if self._use_redis() and self._redis is not None:
            try:
                ms: int = await self._redis.client.pttl(self._redis.key(f"cache:{key}"))
            except (RedisError, OSError) as e:
                self._redis_failed(e)
            else:
                return ms / 1000 if ms >= 0 else None
        return self._local.ttl(key)

    async def get_json(self, key: str) -> Any | None:
        raw = await self.get(key)
        return None if raw is None else orjson.loads(raw)

    async def set_json(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self.set(key, dumps(value), ttl=ttl)

    def lock(
        self, name: str, *, timeout: float, blocking_timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold `name` exclusively (`async with cache.lock(...)`); the Redis lock expires
        after `timeout` seconds if never released. Raises LockNotAcquiredError after
        waiting `blocking_timeout` seconds (None: wait as long as it takes)."""
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        return self._hold(name, timeout, blocking_timeout)

    @asynccontextmanager
    async def _hold(
        self, name: str, expire_seconds: float, blocking_timeout: float | None
    ) -> AsyncIterator[None]:
        deadline = None if blocking_timeout is None else time.monotonic() + blocking_timeout
        async with self._locks.hold(name, blocking_timeout):
            redis_lock = await self._acquire_redis_lock(name, expire_seconds, deadline)
            try:
                yield
            finally:
                if redis_lock is not None:
                    await self._release_redis_lock(name, redis_lock)

    async def _acquire_redis_lock(
        self, name: str, expire_seconds: float, deadline: float | None
    ) -> RedisLock | None:
        if not self._use_redis() or self._redis is None:
            return None
        lock = self._redis.client.lock(
            self._redis.key(f"lock:{name}"), timeout=expire_seconds, thread_local=False
        )
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            acquired = await lock.acquire(blocking_timeout=remaining)
        except (RedisError, OSError) as e:
            # Degraded: this process's lock still holds; other processes are not excluded.
            self._redis_failed(e)
            log.warning("lock_without_redis", lock=name)
            return None
        if not acquired:
            raise LockNotAcquiredError(f"lock {name!r} is held by another process")
        return lock

    async def _release_redis_lock(self, name: str, lock: RedisLock) -> None:
        try:
            await lock.release()
        except LockError:
            # It expired (held past `timeout`) and may belong to someone else now.
            log.warning("lock_expired_before_release", lock=name)
        except (RedisError, OSError) as e:
            # Redis went away while held: the key expires after `timeout` on its own.
            self._redis_failed(e)

    def _use_redis(self) -> bool:
        return self._redis is not None and self._redis.available

    def _redis_failed(self, error: BaseException) -> None:
        self.redis_errors += 1
        log.warning("cache_redis_error", error=f"{type(error).__name__}: {error}")
        if self._redis is not None:
            self._redis.report_error(error)

    def _on_redis_state(self, available: bool) -> None:
        if available:
            self._local.clear()
