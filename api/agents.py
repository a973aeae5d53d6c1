"""AI agents over HTTP: configure, start and stop them, run or override a decision,
read their decision log, replay a decision, coordinate several on one symbol, backtest
one over stored history."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.agent_backtests import AgentBacktestRead, AgentBacktestRequest
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
)
from models.base import Page
from models.calibration import Calibration
from models.replay import ReplayRead, ReplayRequest

router = APIRouter(prefix="/agents", tags=["agents"], route_class=ExactDecimalRoute)

_NO_AGENT = "No such agent of this user."
_NO_DECISION = "No such agent of this user, or no such decision of that agent."
# What every route on one agent answers with, besides its own.
_ON_AGENT = error_responses(not_found=_NO_AGENT, invalid=INVALID_REQUEST)


@router.get(
    "",
    operation_id="listAgents",
    response_model=list[AgentRead],
    responses=error_responses(),
    summary="List agents with their stats",
)
async def list_agents(services: ServicesDep, user_id: CurrentUserId) -> list[AgentRead]:
    """The user's agents (deleted ones left out), each with its account's stats."""
    return await services.agents.list_agents(user_id)


@router.post(
    "",
    operation_id="createAgent",
    response_model=AgentRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        not_found="A symbol is not traded.",
        invalid="An invalid field, a symbol named twice, an unknown or unconfigured LLM "
        "provider, the name is taken (`name_taken`), a model (or fallback) whose cost is "
        "unknown without a `daily_token_budget` (`model_unpriced`), or a fallback named "
        "twice (`fallback_repeated`).",
    ),
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
    "/status",
    operation_id="listAgentStatuses",
    response_model=list[AgentStatusRead],
    responses=error_responses(),
    summary="Every agent's status and results",
)
async def agent_statuses(services: ServicesDep, user_id: CurrentUserId) -> list[AgentStatusRead]:
    """Status and its reason, last decision time, next run, cost today, PnL, win rate
    and trades of every agent."""
    return await services.agents.statuses(user_id)


@router.post(
    "/coordinate-decision",
    operation_id="coordinateAgentDecision",
    response_model=CoordinationRead,
    responses=error_responses(
        not_found="An agent is not the user's, or the symbol is not traded.",
        invalid="An invalid field, fewer than two different agents, an executor that is "
        "not one of them, or an agent that does not trade the symbol.",
    ),
    summary="Several agents decide on one symbol together",
)
async def coordinate_decision(
    body: CoordinateRequest, services: ServicesDep, user_id: CurrentUserId
) -> CoordinationRead:
    """Every agent decides on the symbol at once, shown only that symbol. Views are
    combined by a confidence-weighted vote: buy, sell or hold wins only with the highest
    score and more than half of all confidence; a `risk_check` view with confidence of
    0.7 or more vetoes any trade. `confidence` is the voters' agreement with the result
    and a trade's size is a `share` of the executor's own equity (buy) or holding
    (sell). Each member's view is logged as its decision (trigger coordination) and
    streams inside the coordination's AG-UI run on the executor's channel; with
    `execute`, the combined decision goes through the executor's risk checks and
    account like any other."""
    return await services.agents.coordinate(user_id, body)


@router.get(
    "/{agent_id}",
    operation_id="getAgent",
    response_model=AgentRead,
    responses=_ON_AGENT,
    summary="One agent with its stats",
)
async def get_agent(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    """The agent, its account's stats and its last decision time."""
    return await services.agents.get_agent(user_id, agent_id)


@router.put(
    "/{agent_id}",
    operation_id="updateAgent",
    response_model=AgentRead,
    responses=error_responses(
        not_found=f"{_NO_AGENT} Or a symbol is not traded.",
        invalid="An invalid field or one that cannot change, a symbol named twice, the "
        "name is taken, a model of unknown cost without a token budget (`model_unpriced`), "
        "or the provider cannot be used while the agent is active.",
    ),
    summary="Change an agent's settings",
)
async def update_agent(
    agent_id: uuid.UUID, body: AgentUpdate, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    """Only the fields sent change. An active agent's provider must stay usable."""
    return await services.agents.update_agent(user_id, agent_id, body)


@router.delete(
    "/{agent_id}",
    operation_id="deleteAgent",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_ON_AGENT,
    response_class=Response,
    summary="Delete an agent, keeping its history",
)
async def delete_agent(agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId) -> None:
    """Stops the agent and cancels its open orders; its decisions, orders and account
    stay readable."""
    await services.agents.delete_agent(user_id, agent_id)


@router.post(
    "/{agent_id}/start",
    operation_id="startAgent",
    response_model=AgentRead,
    responses=error_responses(
        not_found=_NO_AGENT,
        invalid="An invalid agent id, a provider (its own or a fallback's) cannot be used "
        "(`agent_cannot_start`, with the reason), or a model's cost is unknown and the "
        "agent has no token budget (`model_unpriced`).",
    ),
    summary="Start an agent deciding on its schedule",
)
async def start_agent(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    """Active from now on; its first cycle is scheduled."""
    return await services.agents.start_agent(user_id, agent_id)


@router.post(
    "/{agent_id}/stop",
    operation_id="stopAgent",
    response_model=AgentRead,
    responses=_ON_AGENT,
    summary="Stop an agent",
)
async def stop_agent(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> AgentRead:
    """Inactive from now on (a pending budget resume is cancelled); a cycle under way
    finishes."""
    return await services.agents.stop_agent(user_id, agent_id)


@router.post(
    "/{agent_id}/execute-decision",
    operation_id="executeAgentDecision",
    response_model=DecisionRead,
    responses=error_responses(
        not_found=_NO_AGENT,
        conflict="The agent's daily cost budget is spent (`agent_budget_spent`): it is "
        "paused and nothing was asked.",
        invalid="An invalid agent id or decision.",
    ),
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


@router.get(
    "/{agent_id}/decisions",
    operation_id="listAgentDecisions",
    response_model=Page[DecisionRead],
    responses=_ON_AGENT,
    summary="An agent's decision log",
)
async def list_decisions(
    agent_id: uuid.UUID,
    services: ServicesDep,
    user_id: CurrentUserId,
    query: Annotated[DecisionQuery, Query()],
) -> Page[DecisionRead]:
    """The decision log, newest first, filtered by type, status, symbol, action, time."""
    return await services.agents.list_decisions(user_id, agent_id, query)


@router.get(
    "/{agent_id}/decisions/{decision_id}",
    operation_id="getAgentDecision",
    response_model=DecisionDetailRead,
    responses=error_responses(not_found=_NO_DECISION, invalid=INVALID_REQUEST),
    summary="One decision with its model call",
)
async def get_decision(
    agent_id: uuid.UUID, decision_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> DecisionDetailRead:
    """One decision in full, with the model call as sent and as answered."""
    return await services.agents.get_decision(user_id, agent_id, decision_id)


@router.post(
    "/{agent_id}/decisions/{decision_id}/replay",
    operation_id="replayAgentDecision",
    response_model=ReplayRead,
    responses=error_responses(
        not_found=_NO_DECISION,
        invalid="An invalid id or body, the decision kept no context to replay "
        "(`not_replayable`), a provider or model given for a decision no model made, or "
        "a provider that is unknown or not configured.",
    ),
    summary="Make a decision again on its stored context and compare",
)
async def replay_decision(
    agent_id: uuid.UUID,
    decision_id: uuid.UUID,
    services: ServicesDep,
    user_id: CurrentUserId,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> ReplayRead:
    """Re-runs the local rules on the decision's stored context, or re-asks a model its
    stored prompt (the decision's own model, or the `provider` and `model` given), then
    sizing and the risk checks on the stored inputs; reports every field that differs
    (decision, planned action and quantity, each risk check) and the replay's own cost.
    Places nothing."""
    return await services.agents.replay_decision(user_id, agent_id, decision_id, body)


@router.get(
    "/{agent_id}/calibration",
    operation_id="getAgentCalibration",
    response_model=Calibration,
    responses=_ON_AGENT,
    summary="How well an agent's confidence predicts its results",
)
async def calibration(
    agent_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> Calibration:
    """Does the agent's confidence mean anything? Every order its executed trades and
    rebalances placed: a buy that later sells closed by its realised PnL net of fees
    (`realised`), the rest by the price a horizon (AGENT_CALIBRATION_HORIZON_SECONDS)
    later (`horizon`). Win rate per confidence bucket, Brier score, high- against
    low-confidence win rates, and each outcome."""
    return await services.agents.calibration(user_id, agent_id)


@router.post(
    "/{agent_id}/backtest",
    operation_id="backtestAgent",
    response_model=AgentBacktestRead,
    responses=error_responses(
        not_found=_NO_AGENT,
        invalid="An invalid field, a symbol that is not the agent's, an end not after the "
        "start, decisions more often than the candles (`every`), more decisions than "
        "AGENT_BACKTEST_MAX_DECISIONS (`too_many_decisions`, naming the count), an "
        "estimated cost over AGENT_BACKTEST_MAX_COST_USD (`backtest_cost_exceeded`, naming "
        "the estimate and the ceiling), or a model with no price (`model_unpriced`).",
    ),
    summary="Backtest an agent over stored history",
)
async def backtest_agent(
    agent_id: uuid.UUID,
    body: AgentBacktestRequest,
    services: ServicesDep,
    user_id: CurrentUserId,
) -> AgentBacktestRead:
    """Runs the agent's decision cycle on a simulated clock over [start, end): each
    decision sees only candles closed by its time, fills on the next candle's open with
    the account's taker fee and the slippage asked, under the agent's risk limits. Model
    answers are kept by prompt hash, so a re-run asks nothing; the cost is estimated
    first and refused over the ceiling (`estimate_only` returns just the estimate).
    Metrics, trades and equity as a strategy backtest's, and buy-and-hold beside them.
    Places no order and writes no decision."""
    return await services.agent_backtests.backtest(user_id, agent_id, body)
