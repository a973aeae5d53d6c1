from __future__ import annotations

import pytest

from core.service_registry import (
    HealthStatus,
    ServiceHealth,
    ServiceRegistry,
    ServiceStartError,
    ServiceState,
)


class FakeService:
    """Records start/stop into a shared journal; can be told to fail or report a status."""

    def __init__(
        self,
        name: str,
        journal: list[str],
        *,
        fail_start: bool = False,
        health: ServiceHealth | None = None,
    ) -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self._health = health or ServiceHealth.healthy()

    async def start(self) -> None:
        if self.fail_start:
            raise ConnectionError(f"{self.name} unreachable")
        self.journal.append(f"start:{self.name}")

    async def stop(self) -> None:
        self.journal.append(f"stop:{self.name}")

    async def health(self) -> ServiceHealth:
        return self._health


def build(journal: list[str], **overrides: FakeService) -> ServiceRegistry:
    """database <- users <- agents, cache (optional redis) registered out of order."""
    registry = ServiceRegistry()
    svc = {n: overrides.get(n, FakeService(n, journal)) for n in ("agents", "users", "database")}
    svc["redis"] = overrides.get("redis", FakeService("redis", journal))
    registry.register("agents", svc["agents"], depends_on=("users", "database"))
    registry.register("users", svc["users"], depends_on=("database",))
    registry.register("redis", svc["redis"], optional=True)
    registry.register("database", svc["database"])
    return registry


class TestStart:
    async def test_starts_each_service_after_its_dependencies(self) -> None:
        journal: list[str] = []
        registry = build(journal)
        await registry.start()
        assert journal == ["start:database", "start:users", "start:agents", "start:redis"]
        assert {i.name: i.state for i in registry.describe()} == dict.fromkeys(
            ("database", "users", "agents", "redis"), ServiceState.RUNNING
        )

    async def test_required_failure_fails_start_and_stops_what_started(self) -> None:
        journal: list[str] = []
        registry = build(journal, users=FakeService("users", journal, fail_start=True))
        with pytest.raises(ServiceStartError, match="'users' failed to start: users unreachable"):
            await registry.start()
        assert journal == ["start:database", "stop:database"]
        states = {i.name: i.state for i in registry.describe()}
        assert states["users"] is ServiceState.FAILED
        assert states["agents"] is ServiceState.REGISTERED

    async def test_optional_failure_keeps_starting_and_reports_degraded(self) -> None:
        journal: list[str] = []
        registry = build(journal, redis=FakeService("redis", journal, fail_start=True))
        await registry.start()
        assert "start:agents" in journal
        report = await registry.health()
        assert report.status is HealthStatus.DEGRADED
        assert report.services["redis"].status is HealthStatus.UNHEALTHY
        assert "redis unreachable" in report.services["redis"].detail

    async def test_unknown_dependency_is_refused(self) -> None:
        registry = ServiceRegistry()
        registry.register("agents", FakeService("agents", []), depends_on=("ghost",))
        with pytest.raises(ValueError, match="unknown service 'ghost'"):
            registry.start_order()

    async def test_cycle_is_refused(self) -> None:
        registry = ServiceRegistry()
        registry.register("a", FakeService("a", []), depends_on=("b",))
        registry.register("b", FakeService("b", []), depends_on=("a",))
        with pytest.raises(ValueError, match="dependency cycle"):
            registry.start_order()

    def test_registering_a_name_twice_is_refused(self) -> None:
        registry = ServiceRegistry()
        registry.register("a", FakeService("a", []))
        with pytest.raises(ValueError, match="registered twice"):
            registry.register("a", FakeService("a", []))


class TestStop:
    async def test_stops_in_reverse_start_order(self) -> None:
        journal: list[str] = []
        registry = build(journal)
        await registry.start()
        journal.clear()
        await registry.stop()
        assert journal == ["stop:redis", "stop:agents", "stop:users", "stop:database"]
        assert all(i.state is ServiceState.STOPPED for i in registry.describe())

    async def test_a_failing_stop_does_not_stop_the_rest(self) -> None:
        journal: list[str] = []

        class BadStop(FakeService):
            async def stop(self) -> None:
                raise RuntimeError("stuck")

        registry = build(journal, users=BadStop("users", journal))
        await registry.start()
        journal.clear()
        await registry.stop()
        assert journal == ["stop:redis", "stop:agents", "stop:database"]


class TestHealth:
    async def test_required_unhealthy_makes_the_whole_unhealthy(self) -> None:
        journal: list[str] = []
        sick = FakeService("database", journal, health=ServiceHealth.unhealthy("disk full"))
        registry = build(journal, database=sick)
        await registry.start()
        report = await registry.health()
        assert report.status is HealthStatus.UNHEALTHY
        assert report.services["database"].detail == "disk full"

    async def test_a_raising_health_check_reads_unhealthy_with_the_reason(self) -> None:
        journal: list[str] = []

        class Raising(FakeService):
            async def health(self) -> ServiceHealth:
                raise OSError("connection reset")

        registry = build(journal, users=Raising("users", journal))
        await registry.start()
        report = await registry.health()
        assert report.status is HealthStatus.UNHEALTHY
        assert report.services["users"].detail == "health check failed: OSError: connection reset"

    async def test_all_healthy(self) -> None:
        registry = build([])
        await registry.start()
        report = await registry.health()
        assert report.status is HealthStatus.HEALTHY
        assert set(report.services) == {"database", "users", "agents", "redis"}
