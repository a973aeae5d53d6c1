"""Backtest runs as the API shows them: every backtest is stored as a run; one started
in the background is a job (queued, running, then succeeded, failed or cancelled) whose
progress is pushed on the `backtests` channel."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from models.agent_backtests import AgentBacktestRead
from models.base import AppModel
from models.enums import BacktestKind, BacktestStatus
from models.strategies import BacktestRead

MAX_RUNS_PAGE = 200


class BacktestRunRead(AppModel):
    id: uuid.UUID
    kind: BacktestKind
    strategy_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    status: BacktestStatus
    stage: str | None = Field(
        description="While live: queued, reading, computing or storing; the last one after."
    )
    progress: float = Field(ge=0, le=1, description="The share done, 0 to 1.")
    request: dict[str, Any] = Field(description="What was asked, as sent.")
    summary: dict[str, Any] | None = Field(
        description="What ran, on which candles, and its metrics (null until it succeeds)."
    )
    error: str | None = Field(description="Why it failed or was cancelled.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BacktestRunDetail(BacktestRunRead):
    result: BacktestRead | AgentBacktestRead | None = Field(
        description="Once it succeeded, the whole run as its route answered it: a "
        "strategy's (trades, open position, equity curve) or an agent's."
    )


class BacktestRunList(AppModel):
    items: list[BacktestRunRead]
    count: int
