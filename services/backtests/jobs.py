"""Backtest runs: every backtest stored as a run, and runs in the background as jobs.

A run is a `backtest_runs` row (models/backtest_runs.py). A synchronous route stores
the one it ran (`finished_run`) with its other writes. `submit()` stores one queued and
runs its work in this process, at most MAX_RUNNING at once (the rest wait their turn in
submission order):

    queued → running (stage reading, computing, storing; progress 0 → 1)
           → succeeded (summary and result stored) | failed (error) | cancelled

Each change of status, and progress at most every PROGRESS_STEP of the run, is written
to the row and published as a `backtest_progress` event on the owner's `backtests`
channel. `cancel()` stops a queued run at once and a running one at its next progress
report (between pages of candles, or before computing or storing): nothing of it is
stored but its status.

Jobs live in the process that took them: a stop cancels the running ones (recorded as
cancelled), and a start marks failed any run another stopped process left queued or
running (`interrupted`). One instance runs jobs; several instances sharing a database
would each mark the others' runs on start (docs/backtests.md, "Jobs").
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from core.exceptions import AppError, ConflictError, NotFoundError
from core.service_registry import ServiceHealth
from database.orm import BacktestRun
from database.orm.types import utcnow
from database.repositories import backtest_runs as run_repo
from models.backtest_runs import BacktestRunDetail, BacktestRunList, BacktestRunRead
from models.enums import BacktestKind, BacktestStatus
from models.events import Channel, EventType
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus

log = structlog.get_logger(__name__)

MAX_RUNNING = 2
# Live (queued or running) jobs one user may have at once.
MAX_LIVE_PER_USER = 10
PROGRESS_STEP = 0.05
INTERRUPTED = "interrupted: the server stopped while it was queued or running; run it again"
STOPPED = "cancelled: the server stopped"


@dataclass(slots=True)
class Outcome:
    """What a run's work hands back: its summary (listed) and its result (read whole)."""

    summary: dict[str, Any]
    result: dict[str, Any]


Report = Callable[[str, float], Awaitable[None]]
# The work gets the run's id (its result names it) and the progress report.
Work = Callable[[uuid.UUID, Report], Awaitable[Outcome]]


class RunCancelledError(Exception):
    """Raised inside a run's progress report once it is cancelled."""


@dataclass(slots=True)
class _Job:
    run_id: uuid.UUID
    user_id: uuid.UUID
    cancelled: bool = False
    running: bool = False
    reason: str = "cancelled by its owner"
    task: asyncio.Task[None] | None = None
    # The share last written (None before the first report, which is always written).
    reported: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class BacktestJobs:
    def __init__(self, database: DatabaseService, event_bus: EventBus) -> None:
        self._database = database
        self._bus = event_bus
        self._slots = asyncio.Semaphore(MAX_RUNNING)
        self._jobs: dict[uuid.UUID, _Job] = {}
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0

    async def start(self) -> None:
        """Runs a stopped process left live are failed as interrupted."""
        async with self._database.database.transaction() as session:
            ended = await run_repo.end_live_runs(session, error=INTERRUPTED, at=utcnow())
        if ended:
            log.warning("backtest_runs_interrupted", runs=ended)

    async def stop(self) -> None:
        """Cancels the live jobs and waits for them to record it."""
        jobs = list(self._jobs.values())
        for job in jobs:
            job.cancelled, job.reason = True, STOPPED
        await asyncio.gather(*(self._stop(job) for job in jobs))

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy(
            "ok",
            live=len(self._jobs),
            succeeded=self.succeeded,
            failed=self.failed,
            cancelled=self.cancelled,
        )

    # -- runs ----------------------------------------------------------------------------

    async def submit(
        self,
        user_id: uuid.UUID,
        *,
        kind: BacktestKind,
        subject_id: uuid.UUID,
        request: dict[str, Any],
        work: Work,
    ) -> BacktestRunRead:
        """Stores the run queued and starts its work in the background; 409 when the
        user has MAX_LIVE_PER_USER live runs already."""
        live = sum(1 for job in self._jobs.values() if job.user_id == user_id)
        if live >= MAX_LIVE_PER_USER:
            raise ConflictError(
                f"you have {live} backtests queued or running, the most at once: wait for "
                "one to finish or cancel one",
                code="too_many_backtests",
                details={"live": live, "max_live": MAX_LIVE_PER_USER},
            )
        async with self._database.database.transaction() as session:
            run = await run_repo.add_run(
                session,
                _new_run(
                    user_id,
                    kind,
                    subject_id,
                    request,
                    BacktestStatus.QUEUED,
                    utcnow(),
                    stage="queued",
                ),
            )
            read = BacktestRunRead.model_validate(run)
        job = _Job(run.id, user_id)
        self._jobs[run.id] = job
        job.task = asyncio.create_task(self._run(job, work), name=f"backtest:{run.id}")
        await self._publish(read, user_id)
        log.info("backtest_job_queued", run_id=str(run.id), kind=kind.value)
        return read

    async def cancel(self, user_id: uuid.UUID, run_id: uuid.UUID) -> BacktestRunRead:
        """Cancels the user's live run; 409 when it has already ended."""
        job = self._jobs.get(run_id)
        if job is None or job.user_id != user_id:
            read = await self.get_run(user_id, run_id)
            raise ConflictError(
                f"the backtest has ended ({read.status.value}): there is nothing to cancel",
                code="backtest_ended",
                details={"run_id": str(run_id), "status": read.status.value},
            )
        job.cancelled = True
        if job.running:
            await job.done.wait()  # it stops at its next report
        else:
            await self._stop(job)  # still waiting for a slot: stop it now
        return await self.get_run(user_id, run_id)

    async def _stop(self, job: _Job) -> None:
        """Cancels the job's task and waits for its end to be recorded."""
        task = job.task
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])
        if not job.done.is_set():
            # Cancelled before its first step: its own handlers never ran.
            self.cancelled += 1
            await self._end(job, BacktestStatus.CANCELLED, job.reason)
            self._jobs.pop(job.run_id, None)
            job.done.set()

    async def wait_for(self, run_id: uuid.UUID) -> None:
        """Returns once the run is no longer live here (at once when it is not)."""
        job = self._jobs.get(run_id)
        if job is not None:
            await job.done.wait()

    async def get_run(self, user_id: uuid.UUID, run_id: uuid.UUID) -> BacktestRunDetail:
        async with self._database.database.read() as session:
            run = await self._owned(session, user_id, run_id)
            return BacktestRunDetail.model_validate(run)

    async def list_runs(
        self,
        user_id: uuid.UUID,
        *,
        strategy_id: uuid.UUID | None = None,
        agent_id: uuid.UUID | None = None,
        status: BacktestStatus | None = None,
        before: datetime | None = None,
        limit: int = 50,
    ) -> BacktestRunList:
        """The user's runs, newest first, without their results."""
        async with self._database.database.read() as session:
            rows = await run_repo.runs_of(
                session,
                user_id=user_id,
                strategy_id=strategy_id,
                agent_id=agent_id,
                statuses=None if status is None else [status.value],
                before=before,
                limit=limit,
            )
            items = [BacktestRunRead.model_validate(row) for row in rows]
        return BacktestRunList(items=items, count=len(items))

    async def delete_run(self, user_id: uuid.UUID, run_id: uuid.UUID) -> None:
        """Deletes an ended run; 409 while it is live (cancel it first)."""
        if run_id in self._jobs and self._jobs[run_id].user_id == user_id:
            raise ConflictError(
                "the backtest is still queued or running: cancel it first",
                code="backtest_live",
                details={"run_id": str(run_id)},
            )
        async with self._database.database.transaction() as session:
            run = await self._owned(session, user_id, run_id)
            await run_repo.delete_run(session, run)

    # -- the work ------------------------------------------------------------------------

    async def _run(self, job: _Job, work: Work) -> None:
        try:
            async with self._slots:
                job.running = True
                await self._update(job, status=BacktestStatus.RUNNING, started_at=utcnow())
                outcome = await work(
                    job.run_id, lambda stage, share: self._report(job, stage, share)
                )
                if job.cancelled:
                    raise RunCancelledError
                await self._update(
                    job,
                    status=BacktestStatus.SUCCEEDED,
                    stage="stored",
                    progress=Decimal(1),
                    summary=outcome.summary,
                    result=outcome.result,
                    finished_at=utcnow(),
                )
                self.succeeded += 1
        except (RunCancelledError, asyncio.CancelledError):
            self.cancelled += 1
            await self._end(job, BacktestStatus.CANCELLED, job.reason)
        except AppError as e:  # a refusal found while running: the period, the candles
            self.failed += 1
            await self._end(job, BacktestStatus.FAILED, e.message)
        except Exception as e:
            self.failed += 1
            log.exception("backtest_job_failed", run_id=str(job.run_id))
            await self._end(job, BacktestStatus.FAILED, f"internal error ({type(e).__name__})")
        finally:
            self._jobs.pop(job.run_id, None)
            job.done.set()

    async def _report(self, job: _Job, stage: str, share: float) -> None:
        if job.cancelled:
            raise RunCancelledError
        share = min(max(share, 0.0), 1.0)
        if job.reported is not None and share - job.reported < PROGRESS_STEP and share < 1.0:
            return
        job.reported = share
        await self._update(job, stage=stage, progress=Decimal(repr(round(share, 4))))

    async def _end(self, job: _Job, status: BacktestStatus, error: str) -> None:
        # Shielded: a stop cancelling the task must not also cancel recording its end.
        await asyncio.shield(self._update(job, status=status, error=error, finished_at=utcnow()))

    async def _update(self, job: _Job, **fields: Any) -> None:
        async with self._database.database.transaction() as session:
            run = await run_repo.find_run(session, job.run_id, user_id=job.user_id)
            if run is None:  # deleted with its strategy or agent meanwhile
                job.cancelled = True
                return
            for name, value in fields.items():
                setattr(run, name, value.value if isinstance(value, BacktestStatus) else value)
            await session.flush()
            read = BacktestRunRead.model_validate(run)
        await self._publish(read, job.user_id)

    async def _publish(self, read: BacktestRunRead, user_id: uuid.UUID) -> None:
        data = read.model_dump(mode="json", exclude={"request", "summary"})
        await self._bus.publish(
            Channel.BACKTESTS.value, EventType.BACKTEST_PROGRESS, data, user_id=user_id
        )

    @staticmethod
    async def _owned(session: Any, user_id: uuid.UUID, run_id: uuid.UUID) -> BacktestRun:
        run = await run_repo.find_run(session, run_id, user_id=user_id)
        if run is None:
            raise NotFoundError(f"backtest {run_id} not found", details={"run_id": str(run_id)})
        return run


def finished_run(
    user_id: uuid.UUID,
    *,
    kind: BacktestKind,
    subject_id: uuid.UUID,
    request: dict[str, Any],
    outcome: Outcome,
    started_at: datetime,
    run_id: uuid.UUID,
) -> BacktestRun:
    """The row of a run that already succeeded (a synchronous route's), under the id
    its result names: the caller adds it in the transaction that stores the rest."""
    now = utcnow()
    return _new_run(
        user_id,
        kind,
        subject_id,
        request,
        BacktestStatus.SUCCEEDED,
        now,
        progress=Decimal(1),
        stage="stored",
        summary=outcome.summary,
        result=outcome.result,
        started_at=started_at,
        finished_at=now,
        id=run_id,
    )


def _new_run(
    user_id: uuid.UUID,
    kind: BacktestKind,
    subject_id: uuid.UUID,
    request: dict[str, Any],
    status: BacktestStatus,
    created_at: datetime,
    **fields: Any,
) -> BacktestRun:
    return BacktestRun(
        user_id=user_id,
        kind=kind.value,
        strategy_id=subject_id if kind is BacktestKind.STRATEGY else None,
        agent_id=subject_id if kind is BacktestKind.AGENT else None,
        status=status.value,
        request=request,
        progress=fields.pop("progress", Decimal(0)),
        created_at=created_at,
        **fields,
    )
