"""Agents, their status and their decision log, as the API takes and shows them.

Field names follow the seed API (name, personality, strategies, risk_tolerance,
max_position_size, paper_balance, llm_provider, llm_model, symbols). The position
limit is stored as a percent of the agent's equity: `max_position_pct`, accepted as
`max_position_size` too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from models.base import AppModel, DecimalStr, InputModel
from models.decisions import Decision
from models.enums import ActionTaken, AgentStatus, DecisionStatus, DecisionTrigger, DecisionType

Name = Annotated[str, Field(min_length=1, max_length=100)]
Percent = Annotated[DecimalStr, Field(gt=0, le=100, allow_inf_nan=False)]
Unit = Annotated[DecimalStr, Field(ge=0, le=1, allow_inf_nan=False)]
Balance = Annotated[DecimalStr, Field(gt=0, lt=Decimal(10) ** 12, allow_inf_nan=False)]
Budget = Annotated[DecimalStr, Field(ge=0, lt=Decimal(10) ** 9, allow_inf_nan=False)]
Interval = Annotated[int, Field(ge=5, le=86_400, description="Seconds between decisions.")]
StrategyName = Annotated[str, Field(min_length=1, max_length=100)]
SymbolName = Annotated[str, Field(min_length=1, max_length=32, examples=["BTC/USD"])]


class Personality(InputModel):
    """How the agent behaves. `aggression` 0..1 (or low/medium/high) lowers the signal
    strength it acts on and raises its order sizes; the rest is given to the model."""

    description: str | None = Field(default=None, max_length=2000)
    style: str | None = Field(default=None, max_length=100, examples=["trend follower"])
    aggression: Unit | Literal["low", "medium", "high"] | None = None
    time_horizon: Literal["scalp", "intraday", "swing", "position"] | None = None


class _AgentFields(InputModel):
    @model_validator(mode="before")
    @classmethod
    def _seed_name(cls, data: Any) -> Any:
        """The seed API calls the position limit `max_position_size`."""
        if isinstance(data, dict) and "max_position_size" in data:
            if "max_position_pct" in data:
                raise ValueError("send max_position_pct or max_position_size, not both")
            data = {**data, "max_position_pct": data["max_position_size"]}
            del data["max_position_size"]
        return data

    @field_validator("symbols", "strategies", check_fields=False)
    @classmethod
    def _no_repeats(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len({v.upper() for v in value}) != len(value):
            raise ValueError("names an entry twice")
        return value


class AgentCreate(_AgentFields):
    name: Name
    agent_type: str = Field(default="trading", min_length=1, max_length=50)
    personality: Personality = Field(default_factory=Personality)
    strategies: list[StrategyName] = Field(
        default_factory=list,
        max_length=20,
        description="Strategy names handed to the model; the built-in `local` provider "
        "knows Moving Average Crossover, RSI Mean Reversion, Bollinger Bands and Momentum "
        "Scanner (none named: all four).",
    )
    symbols: list[SymbolName] = Field(min_length=1, max_length=20, examples=[["BTC/USD"]])
    risk_tolerance: Unit = Decimal("0.5")
    max_position_pct: Percent = Field(
        default=Decimal(10),
        description="Largest position, in percent of the agent's equity (also accepted as "
        "`max_position_size`).",
    )
    paper_balance: Balance = Field(
        default=Decimal(10000), description="Starting cash of the agent's own paper account."
    )
    llm_provider: str | None = Field(
        default=None,
        max_length=32,
        description="local, openai, anthropic, openrouter or openai_compatible; default: "
        "the first configured, else local.",
    )
    llm_model: str | None = Field(default=None, max_length=200)
    decision_interval_seconds: Interval = 300
    daily_cost_budget: Budget = Field(
        default=Decimal(1), description="USD the agent's model calls may cost per UTC day."
    )


class AgentUpdate(_AgentFields):
    """Only the fields sent change. The paper balance is fixed once the account exists."""

    name: Name | None = None
    personality: Personality | None = None
    strategies: list[StrategyName] | None = Field(default=None, max_length=20)
    symbols: list[SymbolName] | None = Field(default=None, min_length=1, max_length=20)
    risk_tolerance: Unit | None = None
    max_position_pct: Percent | None = Field(
        default=None, description="Also accepted as `max_position_size`."
    )
    llm_provider: str | None = Field(default=None, max_length=32)
    llm_model: str | None = Field(default=None, max_length=200)
    decision_interval_seconds: Interval | None = None
    daily_cost_budget: Budget | None = None


class AgentStats(AppModel):
    """Follows the agent's paper account."""

    equity: DecimalStr
    total_pnl: DecimalStr
    realized_pnl: DecimalStr
    unrealized_pnl: DecimalStr
    fees: DecimalStr
    trades_count: int
    winning_trades: int
    losing_trades: int
    win_rate: DecimalStr | None


class AgentRead(AppModel):
    id: uuid.UUID
    name: str
    agent_type: str
    status: AgentStatus
    status_reason: str | None
    personality: dict[str, Any]
    strategies: list[str]
    symbols: list[str]
    risk_tolerance: DecimalStr
    max_position_pct: DecimalStr
    paper_balance: DecimalStr
    llm_provider: str
    llm_model: str
    decision_interval_seconds: int
    daily_cost_budget: DecimalStr
    account_id: uuid.UUID
    last_decision_at: datetime | None
    created_at: datetime
    updated_at: datetime
    stats: AgentStats | None = None


class AgentStatusRead(AppModel):
    id: uuid.UUID
    name: str
    status: AgentStatus
    status_reason: str | None
    last_decision_at: datetime | None
    next_run_at: datetime | None = Field(description="Null unless the agent is active.")
    running: bool = Field(description="A decision cycle is under way now.")
    cost_today: DecimalStr
    daily_cost_budget: DecimalStr
    stats: AgentStats


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
    cost: DecimalStr
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
    cost: DecimalStr
    latency_ms: int | None
    created_at: datetime


class DecisionDetailRead(DecisionRead):
    llm_call: LLMCallRead | None


class DecisionQuery(InputModel):
    """Filters of the decision log."""

    decision_type: DecisionType | None = None
    status: DecisionStatus | None = None
    symbol: str | None = Field(default=None, description="BTC/USD or BTC-USD")
    action_taken: ActionTaken | None = None
    start: datetime | None = Field(default=None, description="At or after (ISO 8601).")
    end: datetime | None = Field(default=None, description="Before (ISO 8601).")
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class ExecuteDecisionRequest(InputModel):
    """Empty: run one cycle now. With `decision`: execute that decision (a human
    override) through the same risk checks and log."""

    decision: Decision | None = None


class ReplayRead(AppModel):
    decision_id: uuid.UUID
    same_decision: bool = Field(description="The stored answer parses to the logged decision.")
    same_action: bool = Field(description="Sizing and risk on the stored inputs reach the action.")
    logged_action: str
    replayed_action: str
    replayed_decision: dict[str, Any] | None
    problems: list[str]
    risk: dict[str, Any] | None


class CoordinateRequest(InputModel):
    agent_ids: list[uuid.UUID] = Field(min_length=2, max_length=20)
    symbol: SymbolName
    execute: bool = Field(default=False, description="Place the combined decision's order.")
    executor_id: uuid.UUID | None = Field(
        default=None, description="Whose account trades; default the first agent."
    )


class CoordinationRead(AppModel):
    coordination_id: uuid.UUID
    symbol: str
    action: Literal["buy", "sell", "hold"]
    confidence: DecimalStr
    quantity: DecimalStr | None
    scores: dict[str, DecimalStr]
    vetoed_by: list[str]
    abstained: list[str]
    reasoning: str
    members: list[DecisionRead]
    executed: DecisionRead | None
