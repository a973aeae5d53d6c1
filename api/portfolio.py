"""The portfolio: valuation, positions, performance and rebalancing of an account.

Every route takes an optional `account_id` and defaults to the user's default account.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.base import IsoDatetime
from models.portfolio import (
    PerformancePeriod,
    PerformanceRead,
    PortfolioSummaryRead,
    RebalancePlanRead,
    RebalanceRequest,
)
from models.trading import PositionRead
from services.portfolio.service import DEFAULT_CURVE_POINTS

router = APIRouter(prefix="/portfolio", tags=["portfolio"], route_class=ExactDecimalRoute)

AccountId = Annotated[
    uuid.UUID | None, Query(description="Defaults to the user's default paper account.")
]

_ON_ACCOUNT = error_responses(not_found="No such account of this user.", invalid=INVALID_REQUEST)


@router.get(
    "/summary",
    operation_id="getPortfolioSummary",
    responses=_ON_ACCOUNT,
    summary="An account's equity, cash and PnL",
)
async def portfolio_summary(
    services: ServicesDep, user_id: CurrentUserId, account_id: AccountId = None
) -> PortfolioSummaryRead:
    """Equity, cash, positions value, total and daily PnL, and the open positions count."""
    return await services.portfolio.summary(user_id, account_id=account_id)


@router.get(
    "/positions",
    operation_id="listPortfolioPositions",
    responses=_ON_ACCOUNT,
    summary="An account's open positions",
)
async def portfolio_positions(
    services: ServicesDep, user_id: CurrentUserId, account_id: AccountId = None
) -> list[PositionRead]:
    """Open positions marked to the latest price."""
    return await services.portfolio.positions(user_id, account_id=account_id)


@router.get(
    "/performance",
    operation_id="getPortfolioPerformance",
    responses=error_responses(
        not_found="No such account of this user.",
        invalid="An invalid query field, or start after end.",
    ),
    summary="An account's equity curve and performance measures",
)
async def portfolio_performance(
    services: ServicesDep,
    user_id: CurrentUserId,
    account_id: AccountId = None,
    period: Annotated[
        PerformancePeriod, Query(description="Ignored when `start` is given.")
    ] = PerformancePeriod.MONTH,
    start: Annotated[IsoDatetime | None, Query(description="ISO-8601; overrides period.")] = None,
    end: Annotated[IsoDatetime | None, Query(description="ISO-8601; defaults to now.")] = None,
    max_points: Annotated[int, Query(ge=2, le=10_000)] = DEFAULT_CURVE_POINTS,
) -> PerformanceRead:
    """Equity curve from the snapshots with returns, drawdown, Sharpe, Sortino, win rate
    and profit factor over the period."""
    return await services.portfolio.performance(
        user_id,
        account_id=account_id,
        period=period,
        start=start,
        end=end,
        max_points=max_points,
    )


@router.post(
    "/rebalance",
    operation_id="rebalancePortfolio",
    responses=error_responses(
        not_found="No such account of this user, or a target symbol is not traded.",
        invalid="An invalid target (weights, a symbol named twice, another quote "
        "currency than the account's) or a plan that cannot be made (`cannot_rebalance`).",
    ),
    summary="Rebalance an account to target weights",
)
async def portfolio_rebalance(
    request: RebalanceRequest,
    services: ServicesDep,
    user_id: CurrentUserId,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9._:\-]+$",
            description="Send the same key to retry safely: a rebalance that already ran "
            "under it is returned (`replayed: true`), not run again.",
        ),
    ] = None,
) -> RebalancePlanRead:
    """Market orders from the holdings to the target weights (sells first); held symbols
    not named are sold. Buys and sells are priced by walking the book the exchange will
    fill them against. With `dry_run` only the plan is returned."""
    return await services.portfolio.rebalance(user_id, request, idempotency_key=idempotency_key)
