"""What an agent may be configured to run, and when its model has failed it enough.

- Its name is unique among the user's live agents; its symbols are pairs, each once.
- Names: a provider's canonical name and default model, as the API's 422s.
- The fallback chain: up to 3 other models, each named once, never the agent's own.
- Cost: a model whose cost is unknown (neither in the built-in price table nor in
  LLM_PRICES; `local` is free, OpenRouter reports what it charged) is refused unless
  the agent has a daily token budget: its calls would never count against the daily
  cost budget (code `model_unpriced`).
- Usable: configured (key, base URL, a model), checked when the agent starts.
- Invalid answers: AGENT_MAX_INVALID_ANSWERS decisions in a row that ended in an
  invalid answer (`invalid_decision`), counted from the decision log.
- The cycle deadline fits an answer and its repair (checked at start).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.exceptions import ConfigError, ValidationFailedError
from database.orm import Agent
from database.repositories import agents as agents_repo
from database.repositories import decisions as decisions_repo
from models.agents import FallbackModel
from models.enums import AgentStatus, DecisionStatus
from services.agents.context import owned_agent
from services.llm.base import ProviderConfigError
from services.llm.service import LLMService
from services.market_data.service import MarketDataService


def resolve_symbols(market: MarketDataService, raw: Sequence[str]) -> list[str]:
    symbols = [market.resolve_symbol(s) for s in raw]
    if len(set(symbols)) != len(symbols):
        raise ValidationFailedError("symbols name a pair twice", details={"symbols": symbols})
    return symbols


async def check_name(
    session: AsyncSession, user_id: uuid.UUID, name: str, agent_id: uuid.UUID | None
) -> None:
    if await agents_repo.name_taken(session, name, user_id=user_id, except_agent_id=agent_id):
        raise ValidationFailedError(
            f"an agent named {name!r} already exists", code="name_taken", details={"name": name}
        )


class ModelChoice:
    """The checks of an agent's provider, model and fallbacks, as 422s with the reason."""

    def __init__(self, llm: LLMService) -> None:
        self._llm = llm

    def provider_name(self, provider: str) -> str:
        try:
            return self._llm.provider_name(provider)
        except ProviderConfigError as e:
            raise ValidationFailedError(e.message, code=e.code, details=e.details) from e

    def default_model(self, provider: str) -> str:
        try:
            return self._llm.default_model(provider)
        except ProviderConfigError as e:
            raise ValidationFailedError(e.message, code=e.code, details=e.details) from e

    def fallbacks(
        self, raw: Sequence[FallbackModel], provider: str, model: str
    ) -> list[dict[str, str]]:
        """The fallback chain as stored: canonical provider names, each model named once
        and never the agent's own."""
        chain: list[dict[str, str]] = []
        seen = {(provider, model)}
        for entry in raw:
            name = self.provider_name(entry.provider)
            if (name, entry.model) in seen:
                raise ValidationFailedError(
                    f"llm_fallbacks names {name} model {entry.model!r} twice (or the agent's "
                    "own model): each fallback must be another model",
                    code="fallback_repeated",
                    details={"provider": name, "model": entry.model},
                )
            seen.add((name, entry.model))
            chain.append({"provider": name, "model": entry.model})
        return chain

    def check_costs(
        self,
        provider: str,
        model: str,
        fallbacks: Sequence[dict[str, str]],
        token_budget: int | None,
    ) -> None:
        """Refuses a model whose cost is unknown unless a token budget caps the agent:
        its calls would otherwise never count against the daily cost budget."""
        chain = [(provider, model), *((f["provider"], f["model"]) for f in fallbacks)]
        check_cost_known(self._llm, chain, token_budget)

    def check_agent(self, agent: Agent) -> None:
        """The agent can start: every model in its chain usable and of known cost (or
        capped by its token budget)."""
        self.check_usable(agent.llm_provider, agent.llm_model, agent.llm_fallbacks)
        self.check_costs(
            agent.llm_provider, agent.llm_model, agent.llm_fallbacks, agent.daily_token_budget
        )

    def check_usable(self, provider: str, model: str, fallbacks: Sequence[dict[str, str]]) -> None:
        self.check_provider(provider, model)
        for fallback in fallbacks:
            self.check_provider(fallback["provider"], fallback["model"])

    def check_provider(self, provider: str, model: str) -> None:
        try:
            self._llm.check_agent_config(provider, model)
        except ProviderConfigError as e:
            raise ValidationFailedError(
                f"the agent cannot run: {e.message}",
                code="agent_cannot_start",
                details={"provider": provider, "reason": e.reason},
            ) from e


def check_deadline(settings: Settings) -> None:
    """A cycle must fit one answer and its repair: ConfigError otherwise (the start is
    refused). Retries beyond that are cut off by the deadline and logged as an error."""
    deadline = settings.agents.cycle_deadline_seconds
    timeout = settings.llm.llm_timeout_seconds
    if deadline <= 2 * timeout:
        raise ConfigError(
            f"invalid setting AGENT_CYCLE_DEADLINE_SECONDS: {deadline:g} s does not fit an "
            f"answer and its repair of LLM_TIMEOUT_SECONDS={timeout:g} s each; raise it "
            f"above {2 * timeout:g} or lower LLM_TIMEOUT_SECONDS"
        )


async def invalid_streak(
    session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID, limit: int
) -> str | None:
    """Why an active agent goes to error: its newest `limit` decisions all ended in an
    invalid answer (from the decision log, so a restart keeps the count; a valid
    decision ends the run). None otherwise."""
    agent, _ = await owned_agent(session, user_id, agent_id)
    _, rows = await decisions_repo.page(session, agent_id, user_id=user_id, limit=limit, offset=0)
    streak = 0
    for row in rows:
        if not invalid_answer(row.status, row.result):
            break
        streak += 1
    if streak < limit or agent.status != AgentStatus.ACTIVE.value:
        return None
    last = rows[0]
    model = (
        f"{last.answered_provider}/{last.answered_model}"
        if last.answered_provider
        else f"{agent.llm_provider}/{agent.llm_model}"
    )
    return (
        f"model {model} gave no valid decision {streak} times in a row "
        f"(AGENT_MAX_INVALID_ANSWERS={limit}); last problems: {last.status_reason}; "
        "change the model or its prompt, then start the agent again"
    )


def invalid_answer(status: str, result: dict[str, Any] | None) -> bool:
    """The decision ended in an invalid answer: the model answered, twice, with no
    valid decision (not a timeout or an outage, which the breaker handles)."""
    error = (result or {}).get("error") or {}
    return status == DecisionStatus.ERROR.value and error.get("reason") == "invalid_decision"


def check_cost_known(
    llm: LLMService, models: Sequence[tuple[str, str]], token_budget: int | None
) -> None:
    """ValidationFailedError (422 `model_unpriced`) for the first of `models` whose cost
    is unknown, unless a token budget caps the agent (see the module docstring)."""
    if token_budget is not None:
        return
    for name, chosen in models:
        if name == "local" or llm.cost_known(name, chosen):
            continue
        raise ValidationFailedError(
            f"the cost of {name} model {chosen!r} is unknown, so the agent's daily cost "
            "budget could not be kept: add the model's price to LLM_PRICES (USD per "
            "million tokens) or set a daily_token_budget",
            code="model_unpriced",
            details={"provider": name, "model": chosen},
        )
