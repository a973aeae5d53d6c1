"""A decision of an agent and its model call, as the API shows them (the decision log).

Cost is null when it is unknown (a model without a price), never shown as 0.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from models.base import AppModel, DecimalStr
from models.enums import ActionTaken, DecisionStatus, DecisionTrigger, DecisionType


class ModelRef(AppModel):
    provider: str
    model: str


class DecisionRead(AppModel):
    id: uuid.UUID
    agent_id: uuid.UUID
    created_at: datetime
    trigger: DecisionTrigger
    decision_type: DecisionType | None = Field(description="Null when the model gave none.")
    status: DecisionStatus
    status_reason: str | None
    action_taken: ActionTaken | None
    symbol: str | None
    side: str | None
    quantity: DecimalStr | None
    price: DecimalStr | None
    order_type: str | None
    confidence_score: DecimalStr | None
    reasoning: str
    market_data: dict[str, Any] = Field(description="The context the agent decided on.")
    result: dict[str, Any] = Field(
        description="What happened: the order (id, status, fill) or the rejection with its "
        "reason, the risk checks, the provider's error."
    )
    execution_time_ms: int | None
    prompt_tokens: int
    completion_tokens: int
    cost: DecimalStr | None = Field(
        description="USD of its model call; null when unknown (a model without a price)."
    )
    answered_by: ModelRef | None = Field(
        default=None,
        description="The provider and model that answered (a fallback's when one did); "
        "null when no model was asked.",
    )
    llm_call_id: uuid.UUID | None
    coordination_id: uuid.UUID | None


class LLMCallRead(AppModel):
    id: uuid.UUID
    provider: str
    model: str
    request: dict[str, Any]
    raw_response: str | None
    parsed: dict[str, Any] | None
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: DecimalStr | None = Field(description="USD; null when unknown (a model without a price).")
    latency_ms: int | None
    created_at: datetime
