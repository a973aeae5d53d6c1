"""AI agents over HTTP: configure, start and stop them, run or override a decision,
read their decision log, replay a decision, coordinate several on one symbol."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from api.deps import CurrentUserId, ServicesDep
from api.routing import ExactDecimalRoute
from models.agents import (
    AgentCreate,
    AgentRead,
    AgentStatusRead,
    AgentUpdate,
    CoordinateRequest,
    CoordinationRead,
    DecisionDetailRead,
    DecisionQuery,
    DecisionRead,
    ExecuteDecisionRequest,
    ReplayRead,
)
from models.base import Page
from services.agents.calibration import Calibration

router = APIRouter(prefix="/agents", tags=["agents"], route_class=ExactDecimalRoute)

_NOT_FOUND: dict[int | str, dict[str, str]] = {404: {"description": "No such agent of this user."}}


@router.get("", response_model=list[AgentRead], summary="List agents with their stats")
async def list_agents(services: ServicesDep, user_id: CurrentUserId) -> list[AgentRead]:
    return await services.agents.list_agents(user_id)


@router.post(
    "",
    response_model=AgentRead,
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "Invalid field, unknown symbol or provider, name taken."}},
    summary="Create an agent and its paper account",
)
async def create_agent(
    body: AgentCreate, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    """The agent starts inactive, with its own paper account funded with
    `paper_balance`. `llm_provider` defaults to the first configured provider, else
    the built-in rule-based `local` one."""
    return await services.agents.create_agent(user_id, body)


@router.get(
    "/status", response_model=list[AgentStatusRead], summary="Every agent's status and results"
)
async def agent_statuses(services: ServicesDep, user_id: CurrentUserId) -> list[AgentStatusRead]:
    """Status and its reason, last decision time, next run, cost today, PnL, win rate
    and trades of every agent."""
    return await services.agents.statuses(user_id)


@router.post(
    "/coordinate-decision",
    response_model=CoordinationRead,
    responses={404: {"description": "An agent is unknown."}, 422: {"description": "Bad request."}},
    summary="Several agents decide on one symbol together",
)
async def coordinate_decision(
    body: CoordinateRequest, services: ServicesDep, user_id: CurrentUserId
) -> CoordinationRead:
    """Every agent decides on the symbol at once. Views are combined by a
    confidence-weighted vote: buy, sell or hold wins only with the highest score and
    more than half of all confidence; a `risk_check` view with confidence of 0.7 or
    more vetoes any trade. Each member's view is logged as its decision (trigger
    coordination); with `execute`, the combined decision goes through the executor's
    risk checks and account like any other."""
    return await services.agents.coordinate(user_id, body)


@router.get("/{agent_id}", response_model=AgentRead, responses=_NOT_FOUND)
async def get_agent(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    return await services.agents.get_agent(user_id, agent_id)


@router.put("/{agent_id}", response_model=AgentRead, responses=_NOT_FOUND)
async def update_agent(
    agent_id: uuid.UUID, body: AgentUpdate, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    """Only the fields sent change. An active agent's provider must stay usable."""
    return await services.agents.update_agent(user_id, agent_id, body)


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_NOT_FOUND,
    response_class=Response,
)
async def delete_agent(agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId) -> None:
    """Stops the agent and cancels its open orders; its decisions, orders and account
    stay readable."""
    await services.agents.delete_agent(user_id, agent_id)


@router.post(
    "/{agent_id}/start",
    response_model=AgentRead,
    responses={**_NOT_FOUND, 422: {"description": "The provider cannot be used (reason)."}},
)
async def start_agent(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    return await services.agents.start_agent(user_id, agent_id)


@router.post("/{agent_id}/stop", response_model=AgentRead, responses=_NOT_FOUND)
async def stop_agent(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    return await services.agents.stop_agent(user_id, agent_id)


@router.post(
    "/{agent_id}/execute-decision",
    response_model=DecisionRead,
    responses={**_NOT_FOUND, 409: {"description": "The daily cost budget is spent."}},
    summary="Run one decision cycle now, or execute a given decision",
)
async def execute_decision(
    agent_id: uuid.UUID,
    services: ServicesDep,
    user_id: CurrentUserId,
    body: Annotated[ExecuteDecisionRequest | None, Body()] = None,
) -> DecisionRead:
    """Without a decision: one full cycle now (context, model, risk, execution). With
    one: that decision (a human override) through the same risk checks and log."""
    decision = body.decision if body is not None else None
    return await services.agents.execute_decision(user_id, agent_id, decision)


@router.get("/{agent_id}/decisions", response_model=Page[DecisionRead], responses=_NOT_FOUND)
async def list_decisions(
    agent_id: uuid.UUID,
    services: ServicesDep,
    user_id: CurrentUserId,
    query: Annotated[DecisionQuery, Query()],
) -> Page[DecisionRead]:
    """The decision log, newest first, filtered by type, status, symbol, action, time."""
    return await services.agents.list_decisions(user_id, agent_id, query)


@router.get(
    "/{agent_id}/decisions/{decision_id}", response_model=DecisionDetailRead, responses=_NOT_FOUND
)
async def get_decision(
    agent_id: uuid.UUID, decision_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> DecisionDetailRead:
    """One decision in full, with the model call as sent and as answered."""
    return await services.agents.get_decision(user_id, agent_id, decision_id)


@router.post(
    "/{agent_id}/decisions/{decision_id}/replay", response_model=ReplayRead, responses=_NOT_FOUND
)
async def replay_decision(
    agent_id: uuid.UUID, decision_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> ReplayRead:
    """Parses the stored model answer again and re-plans on the stored inputs (sizing,
    risk checks); says whether the same decision and the same action come out.
    Places nothing."""
    return await services.agents.replay_decision(user_id, agent_id, decision_id)


@router.get("/{agent_id}/calibration", response_model=Calibration, responses=_NOT_FOUND)
async def calibration(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> Calibration:
    """Does the agent's confidence mean anything? Its executed trades, a horizon
    (AGENT_CALIBRATION_HORIZON_SECONDS) after they filled: win rate per confidence
    bucket, Brier score, and high- against low-confidence win rates."""
    return await services.agents.calibration(user_id, agent_id)
