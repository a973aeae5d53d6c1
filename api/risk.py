"""Risk: limits every order passes, the kill switch, alerts, metrics and stress tests.

The rules, units and what a breach does: docs/risk.md; the metrics: docs/metrics.md.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.base import IsoAwareDatetime, Page
from models.risk import (
    AlertAcknowledge,
    AlertAcknowledged,
    AlertRead,
    AlertType,
    KillSwitchEngage,
    KillSwitchList,
    KillSwitchRead,
    LimitCreate,
    LimitList,
    LimitRead,
    LimitUpdate,
    Severity,
)
from models.risk_metrics import RiskMetricsRead
from models.stress import StressTestRead, StressTestRequest

router = APIRouter(prefix="/risk", tags=["risk"], route_class=ExactDecimalRoute)

_NO_LIMIT = "No such limit of this user."
_ON_LIMIT = error_responses(not_found=_NO_LIMIT, invalid=INVALID_REQUEST)


# -- limits ------------------------------------------------------------------------------


@router.post(
    "/limits",
    operation_id="createRiskLimit",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        not_found="No such account of this user, or an unknown symbol.",
        conflict="An active limit of this type, account and symbol exists: PATCH it.",
        invalid=INVALID_REQUEST,
    ),
    summary="Set a risk limit",
)
async def create_limit(
    body: LimitCreate, services: ServicesDep, user_id: CurrentUserId
) -> LimitRead:
    """From now on every order of the accounts it holds on (the paper API, agents,
    rebalances, closes) is refused when it would breach it; measured at once."""
    return await services.risk.create_limit(user_id, body)


@router.get(
    "/limits",
    operation_id="listRiskLimits",
    responses=error_responses(not_found="No such account of this user.", invalid=INVALID_REQUEST),
    summary="List risk limits",
)
async def list_limits(
    services: ServicesDep,
    user_id: CurrentUserId,
    account_id: Annotated[
        uuid.UUID | None,
        Query(description="Only the limits holding on this account (its own and account-wide)."),
    ] = None,
    active: Annotated[bool | None, Query(description="Only active (or inactive) limits.")] = None,
) -> LimitList:
    """The user's limits, oldest first, with the measure each last saw."""
    return await services.risk.list_limits(user_id, account_id=account_id, active=active)


@router.get(
    "/limits/{limit_id}", operation_id="getRiskLimit", responses=_ON_LIMIT, summary="A risk limit"
)
async def get_limit(
    limit_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> LimitRead:
    """One limit with its current value."""
    return await services.risk.get_limit(user_id, limit_id)


@router.patch(
    "/limits/{limit_id}",
    operation_id="updateRiskLimit",
    responses=error_responses(
        not_found=_NO_LIMIT,
        conflict="Activating it would make two active limits of one type and scope.",
        invalid=INVALID_REQUEST,
    ),
    summary="Change a risk limit",
)
async def update_limit(
    limit_id: uuid.UUID, body: LimitUpdate, services: ServicesDep, user_id: CurrentUserId
) -> LimitRead:
    """Only the fields sent change (value, kill_on_breach, is_active); measured again."""
    return await services.risk.update_limit(user_id, limit_id, body)


@router.delete(
    "/limits/{limit_id}",
    operation_id="deleteRiskLimit",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_ON_LIMIT,
    summary="Delete a risk limit",
)
async def delete_limit(limit_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId) -> None:
    """Orders are no longer checked against it; its alerts stay."""
    await services.risk.delete_limit(user_id, limit_id)


# -- kill switch -------------------------------------------------------------------------


@router.post(
    "/kill-switch",
    operation_id="engageKillSwitch",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        forbidden="A global switch needs an admin.",
        not_found="No such account of this user.",
        invalid=INVALID_REQUEST,
    ),
    summary="Engage a kill switch",
)
async def engage_kill_switch(
    body: KillSwitchEngage, services: ServicesDep, user_id: CurrentUserId
) -> KillSwitchRead:
    """Stops every order of the scope (409 kill_switch_engaged), cancels its open
    orders, pauses its agents and, with `flatten`, sells every position; what it did is
    in `effects`. Holds until released."""
    return await services.risk.switches.engage(user_id, body)


@router.get(
    "/kill-switch",
    operation_id="listKillSwitches",
    responses=error_responses(invalid=INVALID_REQUEST),
    summary="List kill switches",
)
async def list_kill_switches(
    services: ServicesDep,
    user_id: CurrentUserId,
    engaged: Annotated[bool, Query(description="Only the ones engaged now.")] = False,
) -> KillSwitchList:
    """The user's switches and the global ones, newest first (at most 200)."""
    return await services.risk.switches.list_switches(user_id, engaged_only=engaged)


@router.post(
    "/kill-switch/{switch_id}/release",
    operation_id="releaseKillSwitch",
    responses=error_responses(
        forbidden="A global switch needs an admin.",
        not_found="No such kill switch.",
        conflict="It was released already.",
        invalid=INVALID_REQUEST,
    ),
    summary="Release a kill switch",
)
async def release_kill_switch(
    switch_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> KillSwitchRead:
    """Orders pass again; agents it paused stay paused until started."""
    return await services.risk.switches.release(user_id, switch_id)


# -- alerts ------------------------------------------------------------------------------


@router.get(
    "/alerts",
    operation_id="listRiskAlerts",
    responses=error_responses(invalid=INVALID_REQUEST),
    summary="Risk alerts",
)
async def list_alerts(
    services: ServicesDep,
    user_id: CurrentUserId,
    account_id: Annotated[uuid.UUID | None, Query(description="Of this account only.")] = None,
    acknowledged: Annotated[
        bool | None, Query(description="false: the active ones; true: the acknowledged.")
    ] = None,
    severity: Annotated[list[Severity] | None, Query(description="Any of these.")] = None,
    alert_type: Annotated[list[AlertType] | None, Query(description="Any of these.")] = None,
    since: Annotated[
        IsoAwareDatetime | None, Query(description="Raised at or after (with its offset).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[AlertRead]:
    """The user's alerts, newest first. Each was also pushed as a `risk_alert` event on
    the `risk` channel (replayable with `since`)."""
    return await services.risk.alerts.list_alerts(
        user_id,
        account_id=account_id,
        acknowledged=acknowledged,
        severities=severity or (),
        alert_types=alert_type or (),
        since=since,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/alerts/acknowledge",
    operation_id="acknowledgeRiskAlerts",
    responses=error_responses(
        not_found="An id is not one of this user's alerts.", invalid=INVALID_REQUEST
    ),
    summary="Acknowledge risk alerts",
)
async def acknowledge_alerts(
    body: AlertAcknowledge, services: ServicesDep, user_id: CurrentUserId
) -> AlertAcknowledged:
    """Marks them acknowledged (again is harmless); the monitor may raise a condition
    that still holds anew."""
    return await services.risk.alerts.acknowledge(user_id, body.ids)


# -- metrics ---------------------------------------------------------------------------


@router.get(
    "/metrics",
    operation_id="getRiskMetrics",
    responses=error_responses(not_found="No such account of this user.", invalid=INVALID_REQUEST),
    summary="Risk metrics of an account or of all your accounts",
)
async def risk_metrics(
    services: ServicesDep,
    user_id: CurrentUserId,
    account_id: Annotated[
        uuid.UUID | None, Query(description="Defaults to your default paper account.")
    ] = None,
    combined: Annotated[
        bool, Query(description="All your active accounts together (no account_id then).")
    ] = False,
    fresh: Annotated[
        bool, Query(description="Measure now instead of returning the newest stored.")
    ] = False,
    horizon_days: Annotated[
        int | None, Query(ge=1, le=365, description="The horizon VaR and ES (default 10).")
    ] = None,
) -> RiskMetricsRead:
    """VaR and expected shortfall (historical and parametric, 95% and 99%, one day and
    the horizon), volatility, drawdown, Sharpe, Sortino, beta, exposure, concentration,
    correlation and per-position risk of today's holdings (docs/metrics.md). Stored
    every RISK_METRICS_INTERVAL_SECONDS and after fills."""
    return await services.risk.metrics(
        user_id,
        account_id=account_id,
        combined=combined,
        fresh=fresh,
        horizon_days=horizon_days,
    )


# -- stress tests ------------------------------------------------------------------------


@router.post(
    "/stress-test",
    operation_id="runStressTest",
    responses=error_responses(not_found="No such account of this user.", invalid=INVALID_REQUEST),
    summary="Run stress test scenarios",
)
async def stress_test(
    body: StressTestRequest, services: ServicesDep, user_id: CurrentUserId
) -> StressTestRead:
    """The account's positions under built-in and custom shocks: PnL per position and in
    total, before and after, and which limits each scenario would breach."""
    return await services.risk.stress_test(user_id, body)
