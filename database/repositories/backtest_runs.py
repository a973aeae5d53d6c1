"""Queries on backtest runs. Every query is scoped to the owner except the sweep of runs
a stopped process left live. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import BacktestRun
from models.enums import BacktestStatus

LIVE_STATUSES = (BacktestStatus.QUEUED.value, BacktestStatus.RUNNING.value)


async def add_run(session: AsyncSession, run: BacktestRun) -> BacktestRun:
    session.add(run)
    await session.flush()
    return run


async def find_run(
    session: AsyncSession, run_id: uuid.UUID, *, user_id: uuid.UUID
) -> BacktestRun | None:
    query = select(BacktestRun).where(BacktestRun.id == run_id, BacktestRun.user_id == user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def runs_of(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    strategy_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
    statuses: Sequence[str] | None = None,
    before: datetime | None = None,
    limit: int,
) -> list[BacktestRun]:
    """The user's runs, newest first, without their results (deferred)."""
    query = select(BacktestRun).where(BacktestRun.user_id == user_id)
    if strategy_id is not None:
        query = query.where(BacktestRun.strategy_id == strategy_id)
    if agent_id is not None:
        query = query.where(BacktestRun.agent_id == agent_id)
    if statuses:
        query = query.where(BacktestRun.status.in_(list(statuses)))
    if before is not None:
        query = query.where(BacktestRun.created_at < before)
    query = query.order_by(BacktestRun.created_at.desc(), BacktestRun.id.desc()).limit(limit)
    return list(await session.scalars(query))


async def end_live_runs(session: AsyncSession, *, error: str, at: datetime) -> int:
    """Every user's queued or running runs marked failed with `error` (a process that
    held them stopped); returns how many."""
    result = await session.execute(
        update(BacktestRun)
        .where(BacktestRun.status.in_(LIVE_STATUSES))
        .values(status=BacktestStatus.FAILED.value, error=error, finished_at=at)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def delete_run(session: AsyncSession, run: BacktestRun) -> None:
    await session.delete(run)
    await session.flush()
