"""Backtest runs: every backtest is stored as a run; one started in the background is a
job with progress on the `backtests` channel, which can be cancelled
(services/backtests/jobs.py, docs/backtests.md "Runs and jobs")."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.agent_backtests import AgentBacktestRequest
from models.backtest_runs import MAX_RUNS_PAGE, BacktestRunDetail, BacktestRunList, BacktestRunRead
from models.base import IsoAwareDatetime
from models.enums import BacktestStatus
from models.strategies import MAX_BACKTEST_CANDLES, BacktestRequest

router = APIRouter(prefix="/backtests", tags=["backtests"], route_class=ExactDecimalRoute)
strategy_router = APIRouter(
    prefix="/strategies", tags=["strategies"], route_class=ExactDecimalRoute
)
agent_router = APIRouter(prefix="/agents", tags=["agents"], route_class=ExactDecimalRoute)

_NO_RUN = "No such backtest of this user."
_RUN_LINKS = {
    name: {"operationId": op, "parameters": {"run_id": "$response.body#/id"}}
    for name, op in (
        ("GetBacktest", "getBacktest"),
        ("CancelBacktest", "cancelBacktest"),
        ("DeleteBacktest", "deleteBacktest"),
    )
}


@strategy_router.post(
    "/{strategy_id}/backtest-jobs",
    operation_id="startStrategyBacktest",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        202: {"description": "The run, queued.", "links": _RUN_LINKS},
        **error_responses(
            not_found="No such strategy of this user, or an unknown symbol.",
            conflict="You have the most backtests queued or running at once "
            "(`too_many_backtests`).",
            invalid=f"{INVALID_REQUEST} Also: a period without closed candles or spanning "
            f"more than {MAX_BACKTEST_CANDLES} candles (`details.candles`), a bad cost "
            "(`details.field`), or stored parameters that do not run.",
        ),
    },
    summary="Backtest a strategy in the background",
)
async def start_strategy_backtest(
    strategy_id: uuid.UUID, body: BacktestRequest, services: ServicesDep, user_id: CurrentUserId
) -> BacktestRunRead:
    """The same backtest as POST .../backtest, checked now and run as a job: follow it on
    the `backtests` channel or GET /api/v1/backtests/{id}; cancel it with POST
    /api/v1/backtests/{id}/cancel."""
    return await services.strategies.start_backtest(user_id, strategy_id, body)


@agent_router.post(
    "/{agent_id}/backtest-jobs",
    operation_id="startAgentBacktest",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        202: {"description": "The run, queued.", "links": _RUN_LINKS},
        **error_responses(
            not_found="No such agent of this user.",
            conflict="You have the most backtests queued or running at once "
            "(`too_many_backtests`).",
            invalid="As POST /api/v1/agents/{agent_id}/backtest: a bad field or period, too "
            "many decisions (`too_many_decisions`), an estimated cost over the ceiling "
            "(`backtest_cost_exceeded`) or a model with no price (`model_unpriced`).",
        ),
    },
    summary="Backtest an agent in the background",
)
async def start_agent_backtest(
    agent_id: uuid.UUID, body: AgentBacktestRequest, services: ServicesDep, user_id: CurrentUserId
) -> BacktestRunRead:
    """The same backtest as POST .../backtest, estimated now (the ceiling applies) and run
    as a job: its progress (decisions made) on the `backtests` channel; cancel it with
    POST /api/v1/backtests/{id}/cancel, which stops it between decisions."""
    return await services.agent_backtests.start_backtest(user_id, agent_id, body)


@router.get(
    "",
    operation_id="listBacktests",
    responses=error_responses(invalid=INVALID_REQUEST),
    summary="List backtest runs",
)
async def list_backtests(
    services: ServicesDep,
    user_id: CurrentUserId,
    strategy_id: Annotated[uuid.UUID | None, Query(description="Only this strategy's.")] = None,
    agent_id: Annotated[uuid.UUID | None, Query(description="Only this agent's.")] = None,
    status: Annotated[BacktestStatus | None, Query(description="Only runs in it.")] = None,
    before: Annotated[
        IsoAwareDatetime | None, Query(description="Only runs created before (the next page).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE)] = 50,
) -> BacktestRunList:
    """Your backtest runs, newest first, with their summaries but not their trades."""
    return await services.backtest_jobs.list_runs(
        user_id,
        strategy_id=strategy_id,
        agent_id=agent_id,
        status=status,
        before=before,
        limit=limit,
    )


@router.get(
    "/{run_id}",
    operation_id="getBacktest",
    responses=error_responses(not_found=_NO_RUN, invalid=INVALID_REQUEST),
    summary="A backtest run",
)
async def get_backtest(
    run_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> BacktestRunDetail:
    """One run: its status and progress, and once it succeeded its whole result."""
    return await services.backtest_jobs.get_run(user_id, run_id)


@router.post(
    "/{run_id}/cancel",
    operation_id="cancelBacktest",
    responses=error_responses(
        not_found=_NO_RUN,
        conflict="The run has ended: nothing to cancel (`backtest_ended`).",
        invalid=INVALID_REQUEST,
    ),
    summary="Cancel a backtest run",
)
async def cancel_backtest(
    run_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> BacktestRunRead:
    """Stops a queued run at once, a running one at its next step; answers once it has
    stopped, with the run as it ended (usually cancelled; succeeded if it finished first)."""
    return await services.backtest_jobs.cancel(user_id, run_id)


@router.delete(
    "/{run_id}",
    operation_id="deleteBacktest",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(
        not_found=_NO_RUN,
        conflict="The run is queued or running: cancel it first (`backtest_live`).",
        invalid=INVALID_REQUEST,
    ),
    summary="Delete a backtest run",
)
async def delete_backtest(run_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId) -> None:
    """Deletes an ended run and its result."""
    await services.backtest_jobs.delete_run(user_id, run_id)
