"""Strategies: a user's strategies with typed parameters, and their backtests.

The types, their parameters, the fill rules and the metrics: docs/backtests.md.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.lookahead import LookaheadRead, LookaheadRequest
from models.strategies import (
    MAX_BACKTEST_CANDLES,
    BacktestRead,
    BacktestRequest,
    StrategyCreate,
    StrategyList,
    StrategyRead,
    StrategyUpdate,
)
from services.backtests.lookahead import lookahead_check

router = APIRouter(prefix="/strategies", tags=["strategies"], route_class=ExactDecimalRoute)

_NO_STRATEGY = "No such strategy of this user."
_INVALID_STRATEGY = (
    f"{INVALID_REQUEST} A type that is not built in, or a bad parameter "
    "(`details.errors[].field` is `parameters.<name>`)."
)
_NAME_TAKEN = "You have a strategy of that name (`name_taken`)."
# What a client (and the API fuzz run's stateful phase) can do with a new strategy's id.
_LINKS = {
    name: {"operationId": op, "parameters": {"strategy_id": "$response.body#/id"}}
    for name, op in (
        ("GetStrategy", "getStrategy"),
        ("UpdateStrategy", "updateStrategy"),
        ("BacktestStrategy", "backtestStrategy"),
        ("LookaheadCheckStrategy", "lookaheadCheckStrategy"),
        ("DeleteStrategy", "deleteStrategy"),
    )
}


@router.post(
    "",
    operation_id="createStrategy",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {"description": "The strategy as stored.", "links": _LINKS},
        **error_responses(
            not_found="Not answered here; declared as on every operation that takes a body.",
            conflict=_NAME_TAKEN,
            invalid=_INVALID_STRATEGY,
        ),
    },
    summary="Create a strategy",
)
async def create_strategy(
    body: StrategyCreate, services: ServicesDep, user_id: CurrentUserId
) -> StrategyRead:
    """A trend_following, mean_reversion, momentum, breakout or arbitrage strategy; its
    parameters are checked against its type and stored with the defaults filled in."""
    return await services.strategies.create_strategy(user_id, body)


@router.get(
    "",
    operation_id="listStrategies",
    responses=error_responses(invalid=INVALID_REQUEST),
    summary="List strategies",
)
async def list_strategies(
    services: ServicesDep,
    user_id: CurrentUserId,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> StrategyList:
    """Your strategies, oldest first, each with its latest backtest's metrics."""
    return await services.strategies.list_strategies(user_id, active=active)


@router.get(
    "/{strategy_id}",
    operation_id="getStrategy",
    responses=error_responses(not_found=_NO_STRATEGY, invalid=INVALID_REQUEST),
    summary="A strategy",
)
async def get_strategy(
    strategy_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> StrategyRead:
    """One strategy, with its latest backtest's summary and metrics."""
    return await services.strategies.get_strategy(user_id, strategy_id)


@router.patch(
    "/{strategy_id}",
    operation_id="updateStrategy",
    responses=error_responses(
        not_found=_NO_STRATEGY, conflict=_NAME_TAKEN, invalid=_INVALID_STRATEGY
    ),
    summary="Change a strategy",
)
async def update_strategy(
    strategy_id: uuid.UUID, body: StrategyUpdate, services: ServicesDep, user_id: CurrentUserId
) -> StrategyRead:
    """Only the fields sent change; new parameters (or a new type) are checked again."""
    return await services.strategies.update_strategy(user_id, strategy_id, body)


@router.delete(
    "/{strategy_id}",
    operation_id="deleteStrategy",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(not_found=_NO_STRATEGY, invalid=INVALID_REQUEST),
    summary="Delete a strategy",
)
async def delete_strategy(
    strategy_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> None:
    """Deleted with its stored backtest."""
    await services.strategies.delete_strategy(user_id, strategy_id)


@router.post(
    "/{strategy_id}/backtest",
    operation_id="backtestStrategy",
    responses=error_responses(
        not_found=f"{_NO_STRATEGY} Or an unknown symbol.",
        invalid=f"{INVALID_REQUEST} Also: a period without closed candles or spanning more "
        f"than {MAX_BACKTEST_CANDLES} candles (`details.candles`), a bad cost "
        "(`details.field`), or stored parameters that do not run.",
    ),
    summary="Backtest a strategy",
)
async def backtest_strategy(
    strategy_id: uuid.UUID, body: BacktestRequest, services: ServicesDep, user_id: CurrentUserId
) -> BacktestRead:
    """Replays the strategy over the symbol's closed candles with the paper exchange's
    fills, fees and slippage: its trades, the equity curve (at most 500 points) and the
    metrics. The run's summary and metrics are stored on the strategy."""
    return await services.strategies.backtest(user_id, strategy_id, body)


@router.post(
    "/{strategy_id}/lookahead-check",
    operation_id="lookaheadCheckStrategy",
    responses=error_responses(
        not_found=f"{_NO_STRATEGY} Or an unknown symbol.",
        invalid=f"{INVALID_REQUEST} Also: a period without closed candles or spanning more "
        f"than {MAX_BACKTEST_CANDLES} candles (`details.candles`), or stored parameters "
        "that do not run.",
    ),
    summary="Check a strategy for look-ahead",
)
async def lookahead_check_strategy(
    strategy_id: uuid.UUID, body: LookaheadRequest, services: ServicesDep, user_id: CurrentUserId
) -> LookaheadRead:
    """Recomputes the strategy's signals on the period cut after each candle where its
    position changes (each entry and exit, or `max_cut_points` of them) and reports every
    signal or indicator of the candles up to the cut that differs from the whole period's
    run: a repainting strategy is named with the candle and the value."""
    return await lookahead_check(
        services.strategies, services.backtests, user_id, strategy_id, body
    )
