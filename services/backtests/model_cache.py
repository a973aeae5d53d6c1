"""The model's answers during an agent backtest: asked through the LLM service (its
breaker and pricing apply), kept by the hash of the exact prompt, read back for free.

The key is the sha256 of (user, provider, model, the system prompt and the user
prompt as services/llm/prompts.py builds them from the context). The prompt is a pure
function of the context, and a backtest's context is a pure function of the stored
candles, the agent and the run's own earlier decisions, so running the same backtest
again builds the same prompts and every answer comes from `model_response_cache`: no
provider call, no cost. Only valid decisions are kept; a failed call is asked again
next time. The `local` provider's rules are free and deterministic: they are run, not
kept.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from database.repositories import model_cache as cache_repo
from models.decisions import AgentContext, Decision
from services.infra.database import DatabaseService
from services.llm.prompts import AnswerStyle, system_prompt, user_prompt
from services.llm.service import LLMService

Source = Literal["asked", "cached", "local", "failed"]
LOCAL = "local"
_ZERO = Decimal(0)


def prompt_hash(user_id: uuid.UUID, provider: str, model: str, context: AgentContext) -> str:
    """The key of the answer to this context's prompt."""
    material = json.dumps(
        {
            "user": str(user_id),
            "provider": provider,
            "model": model,
            "system": system_prompt(context, AnswerStyle.TOOL_CALL),
            "prompt": user_prompt(context),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Answer:
    decision: Decision | None
    source: Source
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # What this answer cost now: 0 when kept or local, None when unknown.
    cost: Decimal | None = _ZERO
    problem: str | None = None


class ModelAnswers:
    """The answers of one backtest's model."""

    def __init__(
        self,
        database: DatabaseService,
        llm: LLMService,
        *,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        provider: str,
        model: str,
    ) -> None:
        self._database = database
        self._llm = llm
        self._user_id = user_id
        self._agent_key = f"backtest:{agent_id}"
        self.provider = provider
        self.model = model

    async def decide(self, context: AgentContext) -> Answer:
        """The decision for `context`: kept, else asked (and kept if valid)."""
        if self.provider == LOCAL:
            result = await self._llm.decide(
                self._agent_key, provider=LOCAL, model=self.model, context=context
            )
            return Answer(result.decision, "local", problem=_problem(result.error))
        key = prompt_hash(self._user_id, self.provider, self.model, context)
        async with self._database.database.read() as session:
            kept = (await cache_repo.find_many(session, [key], user_id=self._user_id)).get(key)
            decision = None if kept is None else Decision.model_validate(kept.decision)
        if decision is not None:
            return Answer(decision, "cached")
        result = await self._llm.decide(
            self._agent_key, provider=self.provider, model=self.model, context=context
        )
        tokens = (result.prompt_tokens or 0, result.completion_tokens or 0)
        if result.decision is None:
            return Answer(None, "failed", *tokens, result.cost, _problem(result.error))
        async with self._database.database.transaction() as session:
            await cache_repo.keep(
                session,
                user_id=self._user_id,
                prompt_hash=key,
                provider=result.provider,
                model=result.model,
                decision=result.decision.model_dump(mode="json"),
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                cost=result.cost,
            )
        return Answer(result.decision, "asked", *tokens, result.cost)


def _problem(error: Exception | None) -> str | None:
    return None if error is None else str(getattr(error, "message", error))
