"""The one Redis connection: namespaced keys and a supervised health monitor.

Redis is optional at run time: a server that is unreachable at start, or that goes away
later, makes this service degraded (`available` False, `health()` says why) and its
users fall back to in-process behaviour. A monitor pings every interval; each change of
availability is announced to the `on_state_change` listeners (the event bus resubscribes,
the cache drops its local stand-in). Only an unusable URL fails `start()`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask, wait_event

log = structlog.get_logger(__name__)

StateListener = Callable[[bool], Awaitable[None] | None]


def _safe_url(url: str) -> str:
    """host:port/db with no credentials, for logs and health."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


class RedisService:
    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        health_interval_seconds: float = 2.0,
        socket_timeout_seconds: float = 1.0,
    ) -> None:
        if not namespace or any(c in namespace for c in " *?[]\\"):
            raise ValueError(f"namespace must be non-empty, without spaces or globs: {namespace!r}")
        self._url = url
        self.namespace = namespace
        self.health_interval_seconds = health_interval_seconds
        self.socket_timeout_seconds = socket_timeout_seconds
        self._client: Redis | None = None
        self._available = False
        self._reason = "not started"
        self._changed_at: datetime | None = None
        self._latency_ms: float | None = None
        self._listeners: list[StateListener] = []
        self._check_now = asyncio.Event()
        self._monitor = SupervisedTask(
            "redis_monitor", self._monitor_loop, max_backoff=health_interval_seconds
        )

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("RedisService is not started")
        return self._client

    @property
    def available(self) -> bool:
        return self._available

    @property
    def reason(self) -> str:
        """Why Redis is unavailable ('' while it is available)."""
        return self._reason

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def on_state_change(self, listener: StateListener) -> Callable[[], None]:
        """Call `listener(available)` on every change; returns the function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def report_error(self, error: BaseException) -> None:
        """A user of the client saw a connection error: check now instead of at the next tick."""
        log.debug("redis_error_reported", error=f"{type(error).__name__}: {error}")
        self._check_now.set()

    async def check_now(self) -> bool:
        """Ping at once and update the state (notifying listeners); True if Redis answered."""
        await self._check()
        return self._available

    async def start(self) -> None:
        """Connect; raises only when the URL is unusable, an unreachable server is degraded."""
        # One retry so a pooled connection broken by a server restart is replaced
        # transparently; more would only stretch each failure while Redis is down.
        self._client = Redis.from_url(
            self._url,
            socket_timeout=self.socket_timeout_seconds,
            socket_connect_timeout=self.socket_timeout_seconds,
            retry=Retry(NoBackoff(), 1),
        )
        await self._check()
        self._monitor.start()
        log.info(
            "redis_started",
            url=_safe_url(self._url),
            namespace=self.namespace,
            available=self._available,
        )

    async def stop(self) -> None:
        await self._monitor.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._available = False
        self._reason = "stopped"

    async def health(self) -> ServiceHealth:
        data = {
            "url": _safe_url(self._url),
            "namespace": self.namespace,
            "since": self._changed_at.isoformat() if self._changed_at else None,
            "monitor_crashes": self._monitor.crashes,
        }
        if self._available:
            return ServiceHealth.healthy("connected", latency_ms=self._latency_ms, **data)
        return ServiceHealth.degraded(f"redis unavailable: {self._reason}", **data)

    async def _monitor_loop(self) -> None:
        while True:
            await wait_event(self._check_now, self.health_interval_seconds)
            self._check_now.clear()
            await self._check()

    async def _check(self) -> None:
        started = time.perf_counter()
        try:
            # The socket timeouts bound each attempt; this bounds connect + retry + reply.
            await asyncio.wait_for(self.client.ping(), self.socket_timeout_seconds * 3)
        except (RedisError, OSError, TimeoutError) as e:
            await self._set_state(False, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            return
        self._latency_ms = round((time.perf_counter() - started) * 1000, 3)
        await self._set_state(True, "")

    async def _set_state(self, available: bool, reason: str) -> None:
        changed = available != self._available or self._changed_at is None
        self._available = available
        self._reason = reason
        if not changed:
            return
        self._changed_at = datetime.now(UTC)
        if available:
            log.info("redis_available", namespace=self.namespace)
        else:
            log.warning("redis_unavailable", namespace=self.namespace, reason=reason)
        for listener in list(self._listeners):
            try:
                result = listener(available)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("redis_state_listener_failed")
