"""Replaying a decision: what the caller may choose and what the replay reports
(computed by services/agents/replay.py)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field

from models.base import AppModel, DecimalStr, InputModel


class ReplayRequest(InputModel):
    """Whom to re-ask; both optional. Without them a model decision is re-asked of the
    model that made it, and a rules decision re-runs the local rules."""

    provider: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="The provider to re-ask (local, openai, anthropic, openrouter, "
        "openai_compatible); default the decision's own.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The model to re-ask; default the decision's own model when the "
        "provider is the decision's, else that provider's default model.",
    )


class ReplayDifference(AppModel):
    field: str = Field(
        description="What differs: a decision field (decision_type, symbol, side, "
        "quantity, fraction_of_equity, order_type, limit_price, stop_price, "
        "confidence_score, target_weights), the plan's `action` or `planned_quantity`, "
        "`risk.approved`, or one risk check (`risk.<check>`)."
    )
    logged: Any = Field(description="What the decision logged (JSON; null: absent).")
    replayed: Any = Field(description="What the replay gave (JSON; null: absent).")


class ReplayRead(AppModel):
    decision_id: uuid.UUID
    mode: Literal["rules", "model", "given"] = Field(
        description="`rules`: the local rules re-run on the stored context; `model`: the "
        "stored prompt re-asked of a model; `given`: the decision was given (an override "
        "or a coordination's vote), so only sizing and risk are re-run on it."
    )
    provider: str | None = Field(description="Who answered the replay (None when given).")
    model: str | None
    same_decision: bool = Field(
        description="The replay's decision has no difference in any decision field."
    )
    same_action: bool = Field(
        description="Sizing and risk on the stored inputs reach the logged action."
    )
    same_prompt: bool | None = Field(
        description="For a model replay: the prompt sent is the one stored with the "
        "decision (system and user messages). None for rules and given decisions."
    )
    logged_action: str
    replayed_action: str
    replayed_decision: dict[str, Any] | None
    differences: list[ReplayDifference] = Field(
        description="Every field that differs between the logged and the replayed "
        "decision, its plan and its risk checks; empty when they agree."
    )
    problems: list[str] = Field(
        description="Why the replay could not decide (the model's error), or what it "
        "could not reproduce exactly."
    )
    risk: dict[str, Any] | None = Field(description="The replay's risk check, re-run.")
    cost: DecimalStr | None = Field(
        description="What the replay's model call cost in USD (0 for the local rules and "
        "given decisions; None when the model's price is unknown). A model replay's call "
        "is stored in `llm_calls` and counts in the agent's daily budget, and a replay "
        "is refused (409 `agent_budget_spent`) once that budget is spent."
    )
    prompt_tokens: int
    completion_tokens: int
