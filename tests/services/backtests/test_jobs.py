"""Backtest runs and jobs on the real services of each database: every backtest is
stored as a run; a job goes queued → running → succeeded, failed or cancelled, each step
stored and published to its owner; a restart fails what a stopped process left live."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.exceptions import ConflictError, NotFoundError, ValidationFailedError
from database.orm import BacktestRun
from database.orm.types import utcnow
from models.enums import BacktestKind, BacktestStatus
from models.events import Channel, Event, EventType
from models.strategies import BacktestRead, BacktestRequest, StrategyCreate, StrategyRead
from services.backtests.jobs import INTERRUPTED, MAX_LIVE_PER_USER, MAX_RUNNING, Outcome, Report
from services.container import Services
from tests.factories import create_user

CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def published(services: Services) -> list[Event]:
    events: list[Event] = []
    services.event_bus.subscribe(events.append)
    return events


async def new_user(services: Services) -> uuid.UUID:
    return (await create_user(services.database.database)).id


async def add_strategy(services: Services, user_id: uuid.UUID) -> StrategyRead:
    body = StrategyCreate.model_validate(
        {
            "name": f"s-{uuid.uuid4().hex[:8]}",
            "strategy_type": "trend_following",
            "parameters": {"fast_window": 5, "slow_window": 20},
        }
    )
    return await services.strategies.create_strategy(user_id, body)


def request(**fields: Any) -> BacktestRequest:
    return BacktestRequest.model_validate(
        {
            "symbol": "BTC/USD",
            "timeframe": "1m",
            "start": (CLOCK - timedelta(days=1)).isoformat(),
            "slippage_bps": "2",
            **fields,
        }
    )


# What a finished job stores: a real run's (the result must read as a backtest's).
_OUTCOME: list[Outcome] = []


@pytest.fixture(autouse=True)
async def outcome(services: Services) -> None:
    user = await new_user(services)
    strategy = await add_strategy(services, user)
    read = await services.strategies.backtest(user, strategy.id, request())
    _OUTCOME[:] = [Outcome(summary={}, result=read.model_dump(mode="json"))]


class Gate:
    """A job's work that reports, then waits until the test opens it."""

    def __init__(self, *, fails: Exception | None = None) -> None:
        self.open = asyncio.Event()
        self.entered = asyncio.Event()
        self.fails = fails

    async def __call__(self, run_id: uuid.UUID, report: Report) -> Outcome:
        await report("reading", 0.1)
        self.entered.set()
        await self.open.wait()
        await report("computing", 0.5)
        if self.fails is not None:
            raise self.fails
        return _OUTCOME[0]


async def submit(services: Services, user_id: uuid.UUID, work: Gate) -> uuid.UUID:
    strategy = await add_strategy(services, user_id)
    read = await services.backtest_jobs.submit(
        user_id, kind=BacktestKind.STRATEGY, subject_id=strategy.id, request={}, work=work
    )
    assert read.status is BacktestStatus.QUEUED
    return read.id


def progress_of(events: list[Event], run_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        e.envelope()["data"]
        for e in events
        if e.channel == Channel.BACKTESTS.value
        and e.type == EventType.BACKTEST_PROGRESS
        and e.envelope()["data"]["id"] == str(run_id)
    ]


class TestStrategyBacktests:
    async def test_a_backtest_is_stored_as_a_run_with_its_result(self, services: Services) -> None:
        user = await new_user(services)
        strategy = await add_strategy(services, user)
        read = await services.strategies.backtest(user, strategy.id, request())

        run = await services.backtest_jobs.get_run(user, read.run_id)
        assert (run.status, run.kind, run.strategy_id) == (
            BacktestStatus.SUCCEEDED,
            BacktestKind.STRATEGY,
            strategy.id,
        )
        assert run.result == read
        assert run.summary is not None
        assert run.summary["metrics"]["trades"] == read.metrics.trades
        assert run.request["slippage_bps"] == "2"
        listed = await services.backtest_jobs.list_runs(user, strategy_id=strategy.id)
        assert [r.id for r in listed.items] == [read.run_id]

    async def test_a_job_gives_the_same_result_as_the_route_and_reports_its_way(
        self, services: Services, published: list[Event]
    ) -> None:
        user = await new_user(services)
        strategy = await add_strategy(services, user)
        direct = await services.strategies.backtest(user, strategy.id, request())

        queued = await services.strategies.start_backtest(user, strategy.id, request())
        await services.backtest_jobs.wait_for(queued.id)

        run = await services.backtest_jobs.get_run(user, queued.id)
        assert run.status is BacktestStatus.SUCCEEDED
        assert run.progress == 1
        assert isinstance(run.result, BacktestRead)
        assert run.result.trades == direct.trades
        assert run.result.metrics == direct.metrics
        assert run.result.run_id == queued.id
        statuses = [d["status"] for d in progress_of(published, queued.id)]
        assert statuses[0] == "queued"
        assert statuses[-1] == "succeeded"
        assert "running" in statuses
        shares = [d["progress"] for d in progress_of(published, queued.id)]
        assert shares == sorted(shares)
        stored = await services.strategies.get_strategy(user, strategy.id)
        assert stored.performance_metrics == run.result.metrics.model_dump(mode="json")

    async def test_a_job_is_checked_before_it_is_queued(self, services: Services) -> None:
        user = await new_user(services)
        strategy = await add_strategy(services, user)
        with pytest.raises(ValidationFailedError):
            await services.strategies.start_backtest(
                user, strategy.id, request(start=(CLOCK + timedelta(days=1)).isoformat())
            )
        with pytest.raises(NotFoundError):
            await services.strategies.start_backtest(user, strategy.id, request(symbol="NOPE/USD"))
        assert (await services.backtest_jobs.list_runs(user)).count == 0

    async def test_a_deleted_strategy_takes_its_runs(self, services: Services) -> None:
        user = await new_user(services)
        strategy = await add_strategy(services, user)
        read = await services.strategies.backtest(user, strategy.id, request())
        await services.strategies.delete_strategy(user, strategy.id)
        with pytest.raises(NotFoundError):
            await services.backtest_jobs.get_run(user, read.run_id)


class TestJobs:
    async def test_cancelling_a_running_job_stops_it_at_its_next_report(
        self, services: Services, published: list[Event]
    ) -> None:
        user = await new_user(services)
        gate = Gate()
        run_id = await submit(services, user, gate)
        await gate.entered.wait()

        cancelling = asyncio.create_task(services.backtest_jobs.cancel(user, run_id))
        gate.open.set()
        ended = await cancelling

        assert ended.status is BacktestStatus.CANCELLED
        assert ended.summary is None
        assert (await services.backtest_jobs.get_run(user, run_id)).result is None
        assert progress_of(published, run_id)[-1]["status"] == "cancelled"

    async def test_a_queued_job_is_cancelled_without_running(self, services: Services) -> None:
        user = await new_user(services)
        busy = [Gate() for _ in range(MAX_RUNNING)]
        for gate in busy:
            await submit(services, user, gate)
        for gate in busy:
            await gate.entered.wait()
        waiting = Gate()
        run_id = await submit(services, user, waiting)

        ended = await services.backtest_jobs.cancel(user, run_id)

        assert ended.status is BacktestStatus.CANCELLED
        assert ended.started_at is None
        assert not waiting.entered.is_set()
        for gate in busy:
            gate.open.set()

    @pytest.mark.parametrize(
        ("error", "message"),
        [
            (ValidationFailedError("the candles are inconsistent"), "the candles are inconsistent"),
            (RuntimeError("boom"), "internal error (RuntimeError)"),
        ],
    )
    async def test_a_failing_job_says_why(
        self, services: Services, error: Exception, message: str
    ) -> None:
        user = await new_user(services)
        gate = Gate(fails=error)
        gate.open.set()
        run_id = await submit(services, user, gate)
        await services.backtest_jobs.wait_for(run_id)

        run = await services.backtest_jobs.get_run(user, run_id)
        assert (run.status, run.error) == (BacktestStatus.FAILED, message)
        assert run.finished_at is not None

    async def test_an_ended_run_cannot_be_cancelled_and_a_live_one_not_deleted(
        self, services: Services
    ) -> None:
        user = await new_user(services)
        gate = Gate()
        run_id = await submit(services, user, gate)
        with pytest.raises(ConflictError) as live:
            await services.backtest_jobs.delete_run(user, run_id)
        assert live.value.code == "backtest_live"
        gate.open.set()
        await services.backtest_jobs.wait_for(run_id)

        with pytest.raises(ConflictError) as ended:
            await services.backtest_jobs.cancel(user, run_id)
        assert ended.value.code == "backtest_ended"
        await services.backtest_jobs.delete_run(user, run_id)
        with pytest.raises(NotFoundError):
            await services.backtest_jobs.get_run(user, run_id)

    async def test_another_users_run_is_not_found(self, services: Services) -> None:
        owner, other = await new_user(services), await new_user(services)
        gate = Gate()
        gate.open.set()
        run_id = await submit(services, owner, gate)
        await services.backtest_jobs.wait_for(run_id)
        for attempt in (
            services.backtest_jobs.get_run(other, run_id),
            services.backtest_jobs.cancel(other, run_id),
            services.backtest_jobs.delete_run(other, run_id),
        ):
            with pytest.raises(NotFoundError):
                await attempt

    async def test_a_user_has_a_bounded_number_of_live_jobs(self, services: Services) -> None:
        user = await new_user(services)
        gates = [Gate() for _ in range(MAX_LIVE_PER_USER)]
        for gate in gates:
            await submit(services, user, gate)
        with pytest.raises(ConflictError) as caught:
            await submit(services, user, Gate())
        assert caught.value.code == "too_many_backtests"
        other = await new_user(services)
        await submit(services, other, Gate())  # another user's turn is their own
        for gate in gates:
            gate.open.set()

    async def test_a_start_fails_the_runs_a_stopped_process_left_live(
        self, services: Services
    ) -> None:
        user = await new_user(services)
        strategy = await add_strategy(services, user)
        async with services.database.database.transaction() as session:
            left = BacktestRun(
                user_id=user,
                kind="strategy",
                strategy_id=strategy.id,
                status="running",
                request={},
                created_at=utcnow(),
            )
            session.add(left)
        await services.backtest_jobs.start()

        run = await services.backtest_jobs.get_run(user, left.id)
        assert (run.status, run.error) == (BacktestStatus.FAILED, INTERRUPTED)
