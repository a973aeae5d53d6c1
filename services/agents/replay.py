"""Replaying a decision: the decision made again on exactly what it saw, and what differs.

A decision's row keeps the whole context the agent got (every candle, the indicators,
the account, the limits: `Seen.logged_context`) and the inputs sizing and the risk
check used. A replay rebuilds that context and:

- `rules`: a decision of the local provider re-runs the local rules on it;
- `model`: a model decision re-asks a model (its own, or the provider and model the
  caller names) through the LLM service. The prompt is a pure function of the context
  (services/llm/prompts.py), so the prompt sent is the stored one; `same_prompt` checks
  it against the request its model call stored;
- `given`: a decision nobody was asked for (an override, a coordination's vote) is
  taken as logged.

Then sizing and the risk check run again on the stored inputs (services/agents/
planning.py), and every field that differs is reported: the decision's fields, the
planned action and quantity, the risk verdict and each risk check. A replay places
nothing and writes no decision. A model replay is paid like a cycle's call: refused
(409 `agent_budget_spent`) once the agent's daily budget is spent, and its call stored
in `llm_calls`, so the budget counts it. Its calls go through
a circuit breaker of their own (`replay:{agent_id}`), so replays never open the
agent's.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Literal

from core.exceptions import ValidationFailedError
from database.orm import AgentDecision, LLMCall
from models.decisions import AgentContext, Decision
from models.replay import ReplayDifference, ReplayRead, ReplayRequest
from services.agents.choice import check_cost_known
from services.agents.cycle import BudgetSpentError, budget_spent
from services.agents.decision_log import DecisionLog, decision_symbol, logged_decision
from services.agents.planning import Inputs, Plan, plan
from services.llm.base import ProviderResult
from services.llm.service import LLMService
from services.market_data.service import MarketDataService

Mode = Literal["rules", "model", "given"]

_ZERO = Decimal(0)
_LOCAL = "local"
# The decision's fields a replay compares; its reasoning is words, not a decision.
DECISION_FIELDS = (
    "decision_type",
    "symbol",
    "side",
    "quantity",
    "fraction_of_equity",
    "order_type",
    "limit_price",
    "stop_price",
    "confidence_score",
    "target_weights",
)


class Replayer:
    def __init__(self, decisions: DecisionLog, market: MarketDataService, llm: LLMService) -> None:
        self._decisions = decisions
        self._market = market
        self._llm = llm

    async def replay(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        decision_id: uuid.UUID,
        body: ReplayRequest | None = None,
    ) -> ReplayRead:
        """The decision made again on its stored context and inputs, compared field by
        field with the logged one. Places nothing."""
        body = body or ReplayRequest()
        row, call = await self._decisions.stored(user_id, agent_id, decision_id)
        stored = row.market_data or {}
        if "context" not in stored or "inputs" not in stored:
            raise ValidationFailedError(
                "this decision kept no context to replay", code="not_replayable"
            )
        context = AgentContext.model_validate(stored["context"])
        inputs = Inputs.from_record(stored["inputs"])
        problems = _truncated(stored["context"])
        logged = _logged(row, call)
        mode: Mode = "given"
        result: ProviderResult | None = None
        same_prompt: bool | None = None
        if call is None:
            if body.provider is not None or body.model is not None:
                raise ValidationFailedError(
                    "this decision was given, not asked of a model: there is no prompt to "
                    "re-ask; replay it without a provider or model",
                    code="not_replayable",
                )
            replayed = logged_decision(row)
        else:
            provider, model = self._whom(call, body)
            mode = "rules" if provider == _LOCAL else "model"
            if mode == "model":
                await self._within_budget(user_id, agent_id, provider, model)
            result = await self._llm.decide(
                f"replay:{agent_id}", provider=provider, model=model, context=context
            )
            if mode == "model" and result.attempts:
                # What it cost is the agent's to pay: its budget counts it from now on.
                await self._decisions.record_call(user_id, agent_id, result)
            replayed = result.decision
            if result.error is not None:
                problems.append(f"the replay got no decision: {result.error.message}")
            if mode == "model":
                same_prompt = _prompt(call.request) == _prompt(result.request)
        replayed_plan = self._plan(replayed, inputs)
        logged_plan: dict[str, Any] = (row.result or {}).get("plan") or {}
        logged_action = str(logged_plan.get("action") or ("error" if logged is None else "none"))
        replayed_action = replayed_plan.action if replayed_plan is not None else "error"
        replayed_record = replayed.model_dump(mode="json") if replayed is not None else None
        decision_diffs = _decision_differences(logged, replayed_record)
        plan_record = replayed_plan.to_record() if replayed_plan is not None else None
        differences = [
            *decision_diffs,
            *_plan_differences(logged_plan, plan_record, logged_action, replayed_action),
        ]
        return ReplayRead(
            decision_id=row.id,
            mode=mode,
            provider=result.provider if result is not None else None,
            model=result.model if result is not None else None,
            same_decision=not decision_diffs,
            same_action=replayed_action == logged_action,
            same_prompt=same_prompt,
            logged_action=logged_action,
            replayed_action=replayed_action,
            replayed_decision=replayed_record,
            differences=differences,
            problems=problems,
            risk=plan_record["risk"] if plan_record is not None else None,
            cost=result.cost if result is not None else _ZERO,
            prompt_tokens=(result.prompt_tokens or 0) if result is not None else 0,
            completion_tokens=(result.completion_tokens or 0) if result is not None else 0,
        )

    async def _within_budget(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, provider: str, model: str
    ) -> None:
        """A model replay is paid like a cycle's call: refused (409) once the agent's
        daily budget is spent, as the agent's own cycles would be, and refused (422
        `model_unpriced`) on a model of unknown cost unless the agent has a token
        budget, as creating the agent on it would be."""
        agent, usage = await self._decisions.usage_today(user_id, agent_id)
        check_cost_known(self._llm, [(provider, model)], agent.daily_token_budget)
        spent = budget_spent(agent, usage)
        if spent is not None:
            raise BudgetSpentError(
                f"replay refused: {spent[0]}", details={"agent_id": str(agent_id)}
            )

    def _whom(self, call: LLMCall, body: ReplayRequest) -> tuple[str, str]:
        """The provider and model to re-ask; ProviderConfigError (422) for one that
        cannot answer, ValidationFailedError for a model the local rules do not have."""
        provider = self._llm.provider_name(body.provider or call.provider)
        if body.model is not None:
            model = body.model
        elif provider == self._llm.provider_name(call.provider):
            model = call.model
        else:
            model = self._llm.default_model(provider)
        if provider == _LOCAL and model != self._llm.default_model(_LOCAL):
            raise ValidationFailedError(
                f"the local provider has one model, {self._llm.default_model(_LOCAL)!r}; "
                f"{model!r} is none of its",
                details={"model": model},
            )
        self._llm.check_agent_config(provider, model)
        return provider, model

    def _plan(self, decision: Decision | None, inputs: Inputs) -> Plan | None:
        if decision is None:
            return None
        return plan(decision, decision_symbol(self._market, decision), inputs)


def _logged(row: AgentDecision, call: LLMCall | None) -> dict[str, Any] | None:
    """The logged decision as JSON: its model call's parsed answer, else its row's."""
    if call is not None:
        parsed: dict[str, Any] | None = call.parsed
        return parsed
    decision = logged_decision(row)
    return decision.model_dump(mode="json") if decision is not None else None


def _truncated(context: dict[str, Any]) -> list[str]:
    """Symbols whose candles the decision did not keep whole (decisions logged before
    every candle was kept): their prompt cannot be rebuilt exactly."""
    problems = []
    for symbol in context.get("symbols") or ():
        seen = symbol.get("candles_seen")
        kept = len(symbol.get("candles") or ())
        if seen is not None and seen != kept:
            problems.append(
                f"{symbol.get('symbol')}: the decision kept {kept} of the {seen} candles it "
                "saw, so a model is asked on fewer (its indicators are kept whole)"
            )
    return problems


def _prompt(request: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The prompt of a stored or sent request: its system text and its messages up to
    the first user message (a repair turn, when there was one, comes after)."""
    messages: list[Any] = []
    for message in request.get("messages") or ():
        messages.append(message)
        if isinstance(message, dict) and message.get("role") == "user":
            break
    return request.get("system"), messages


def _decision_differences(
    logged: dict[str, Any] | None, replayed: dict[str, Any] | None
) -> list[ReplayDifference]:
    if logged is None and replayed is None:
        return []
    return [
        ReplayDifference(field=name, logged=before, replayed=after)
        for name in DECISION_FIELDS
        if (before := (logged or {}).get(name)) != (after := (replayed or {}).get(name))
    ]


def _plan_differences(
    logged: dict[str, Any],
    replayed: dict[str, Any] | None,
    logged_action: str,
    replayed_action: str,
) -> list[ReplayDifference]:
    differences = []
    if logged_action != replayed_action:
        differences.append(
            ReplayDifference(field="action", logged=logged_action, replayed=replayed_action)
        )
    after = replayed or {}
    if logged.get("quantity") != after.get("quantity"):
        differences.append(
            ReplayDifference(
                field="planned_quantity",
                logged=logged.get("quantity"),
                replayed=after.get("quantity"),
            )
        )
    differences.extend(_risk_differences(logged.get("risk"), after.get("risk")))
    return differences


def _risk_differences(
    logged: dict[str, Any] | None, replayed: dict[str, Any] | None
) -> list[ReplayDifference]:
    before, after = logged or {}, replayed or {}
    differences = []
    if before.get("approved") != after.get("approved"):
        differences.append(
            ReplayDifference(
                field="risk.approved", logged=before.get("approved"), replayed=after.get("approved")
            )
        )
    checks_before = _checks(before)
    checks_after = _checks(after)
    for name in dict.fromkeys([*checks_before, *checks_after]):
        if checks_before.get(name) != checks_after.get(name):
            differences.append(
                ReplayDifference(
                    field=f"risk.{name}",
                    logged=checks_before.get(name),
                    replayed=checks_after.get(name),
                )
            )
    return differences


def _checks(risk: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        str(check.get("name")): {k: v for k, v in check.items() if k != "name"}
        for check in risk.get("checks") or ()
        if isinstance(check, dict)
    }
