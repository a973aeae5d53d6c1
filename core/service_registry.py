"""The registry: every service by name, started in dependency order, stopped in reverse.

A service is anything with `start()`, `stop()` and `health()`. A required service that
fails to start fails the whole start (the ones already running are stopped again); an
optional one (Redis, say) is marked failed and the rest carry on, and its health
makes the whole report degraded rather than unhealthy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import structlog

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT_SECONDS = 3.0


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class ServiceState(StrEnum):
    REGISTERED = "registered"
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    status: HealthStatus
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def healthy(cls, detail: str = "ok", **data: Any) -> ServiceHealth:
        return cls(HealthStatus.HEALTHY, detail, data)

    @classmethod
    def degraded(cls, detail: str, **data: Any) -> ServiceHealth:
        return cls(HealthStatus.DEGRADED, detail, data)

    @classmethod
    def unhealthy(cls, detail: str, **data: Any) -> ServiceHealth:
        return cls(HealthStatus.UNHEALTHY, detail, data)


@runtime_checkable
class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def health(self) -> ServiceHealth: ...


class ServiceStartError(RuntimeError):
    """A required service failed to start; the message names it and the cause."""


@dataclass(slots=True)
class _Entry:
    name: str
    service: Service
    depends_on: tuple[str, ...]
    optional: bool
    state: ServiceState = ServiceState.REGISTERED
    error: str | None = None
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    name: str
    state: ServiceState
    depends_on: tuple[str, ...]
    optional: bool
    error: str | None
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: HealthStatus
    timestamp: datetime
    services: dict[str, ServiceHealth]


class ServiceRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._started: list[str] = []

    def register(
        self,
        name: str,
        service: Service,
        *,
        depends_on: tuple[str, ...] = (),
        optional: bool = False,
    ) -> None:
        if name in self._entries:
            raise ValueError(f"service {name!r} is registered twice")
        self._entries[name] = _Entry(name, service, tuple(depends_on), optional)

    def get(self, name: str) -> Service:
        return self._entries[name].service

    def start_order(self) -> list[str]:
        """Names in an order where each comes after all it depends on (registration order
        breaks ties); an unknown dependency or a cycle is a programming error."""
        order: list[str] = []
        visiting: set[str] = set()
        done: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name not in self._entries:
                raise ValueError(f"{path[-1]!r} depends on unknown service {name!r}")
            if name in visiting:
                raise ValueError("dependency cycle: " + " -> ".join((*path, name)))
            visiting.add(name)
            for dep in self._entries[name].depends_on:
                visit(dep, (*path, name))
            visiting.discard(name)
            done.add(name)
            order.append(name)

        for name in self._entries:
            visit(name, ())
        return order

    async def start(self) -> None:
        """Start every service in dependency order; undo and raise if a required one fails."""
        for name in self.start_order():
            entry = self._entries[name]
            failed_deps = [
                d for d in entry.depends_on if self._entries[d].state is not ServiceState.RUNNING
            ]
            entry.state = ServiceState.STARTING
            try:
                if failed_deps and not entry.optional:
                    required_failed = [d for d in failed_deps if not self._entries[d].optional]
                    if required_failed:
                        raise ServiceStartError(f"dependencies not running: {required_failed}")
                await entry.service.start()
            except Exception as e:
                entry.state = ServiceState.FAILED
                entry.error = f"{type(e).__name__}: {e}"
                if entry.optional:
                    log.warning("optional_service_failed", service=name, error=entry.error)
                    continue
                log.error("service_start_failed", service=name, error=entry.error)
                await self.stop()
                raise ServiceStartError(f"service {name!r} failed to start: {e}") from e
            entry.state = ServiceState.RUNNING
            entry.started_at = datetime.now(UTC)
            entry.error = None
            self._started.append(name)
            log.info("service_started", service=name)

    async def stop(self) -> None:
        """Stop what started, in reverse order; one failing to stop does not stop the rest."""
        while self._started:
            name = self._started.pop()
            entry = self._entries[name]
            entry.state = ServiceState.STOPPING
            try:
                await entry.service.stop()
            except Exception as e:
                entry.error = f"{type(e).__name__}: {e}"
                log.exception("service_stop_failed", service=name)
            entry.state = ServiceState.STOPPED
            log.info("service_stopped", service=name)

    def describe(self) -> list[ServiceInfo]:
        return [
            ServiceInfo(e.name, e.state, e.depends_on, e.optional, e.error, e.started_at)
            for e in (self._entries[n] for n in self.start_order())
        ]

    async def _health_of(self, entry: _Entry) -> ServiceHealth:
        if entry.state is ServiceState.FAILED:
            return ServiceHealth.unhealthy(entry.error or "failed to start")
        if entry.state is not ServiceState.RUNNING:
            return ServiceHealth.unhealthy(f"not running ({entry.state})")
        try:
            return await asyncio.wait_for(entry.service.health(), HEALTH_TIMEOUT_SECONDS)
        except TimeoutError:
            return ServiceHealth.unhealthy(f"health check took over {HEALTH_TIMEOUT_SECONDS}s")
        except Exception as e:
            return ServiceHealth.unhealthy(f"health check failed: {type(e).__name__}: {e}")

    async def health(self) -> HealthReport:
        """Every service's health, checked concurrently. An unhealthy required service makes
        the whole unhealthy; anything else short of healthy makes it degraded."""
        entries = [self._entries[n] for n in self.start_order()]
        results = await asyncio.gather(*(self._health_of(e) for e in entries))
        overall = HealthStatus.HEALTHY
        for entry, result in zip(entries, results, strict=True):
            if result.status is HealthStatus.HEALTHY:
                continue
            if result.status is HealthStatus.UNHEALTHY and not entry.optional:
                overall = HealthStatus.UNHEALTHY
            elif overall is HealthStatus.HEALTHY:
                overall = HealthStatus.DEGRADED
        return HealthReport(
            status=overall,
            timestamp=datetime.now(UTC),
            services={e.name: r for e, r in zip(entries, results, strict=True)},
        )
