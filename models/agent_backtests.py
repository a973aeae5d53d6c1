"""An agent's backtest: its request, the cost estimate made before it, and its result.

The rules (the simulated clock, point-in-time gating, fills, the cache of model answers,
the estimate and its ceiling) are in docs/backtests.md, "Agent backtests". Money is
decimal strings; statistics are JSON numbers, as in a strategy's backtest, whose
metrics (`BacktestMetricsRead`) and trade and equity shapes are reused here.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StrictBool

from models.base import AppModel, DecimalStr, InputModel, IsoAwareDatetime
from models.enums import OrderSide, Timeframe
from models.strategies import (
    MAX_EQUITY_POINTS,
    BacktestMetricsRead,
    BacktestTradeRead,
    Bps,
    EquityPoint,
)

Symbol = Annotated[str, Field(min_length=1, max_length=32)]


class AgentBacktestRequest(InputModel):
    start: IsoAwareDatetime = Field(description="The first decision's time.")
    end: IsoAwareDatetime | None = Field(
        default=None,
        description="Decisions are made before it (default and at most: the market's "
        "clock); each sees only candles closed by its own time.",
    )
    every: Timeframe | None = Field(
        default=None,
        description="Time between decisions (default: the agent's "
        "decision_interval_seconds); at least the candle timeframe.",
    )
    symbols: list[Symbol] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="A subset of the agent's symbols (default: all of them).",
    )
    initial_cash: DecimalStr | None = Field(
        default=None,
        gt=0,
        le=10**15,
        allow_inf_nan=False,
        description="Quote currency, to 1e-8 (default: the agent account's initial balance).",
        examples=["10000"],
    )
    fee_bps: Bps | None = Field(
        default=None, description="Per fill; default the taker rate the agent's account pays."
    )
    slippage_bps: Bps = Field(default=Decimal(0), description="Of the fill's base price.")
    slippage_range_share: DecimalStr = Field(
        default=Decimal(0),
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Extra slippage, a share of the fill candle's high - low.",
    )
    estimate_only: StrictBool = Field(
        default=False, description="Return the cost estimate without running."
    )


class AgentBacktestEstimate(AppModel):
    """What the run would cost before it runs: decisions x estimated tokens per call x
    the model's price. An upper bound: answers kept from an earlier run are free, and
    which prompts they are is known only as the run builds them."""

    decisions: int
    decision_interval_seconds: int
    provider: str
    model: str
    free: bool = Field(description="The local rules: nothing to pay.")
    prompt_tokens_per_call: int = Field(description="The first decision's prompt, estimated.")
    completion_tokens_per_call: int
    estimated_cost: DecimalStr = Field(description="USD.")
    max_cost: DecimalStr = Field(description="AGENT_BACKTEST_MAX_COST_USD.")
    max_decisions: int = Field(description="AGENT_BACKTEST_MAX_DECISIONS.")


class AgentFillRead(AppModel):
    time: datetime = Field(description="The fill candle's open time.")
    decided_at: datetime
    symbol: str
    side: OrderSide
    quantity: DecimalStr
    price: DecimalStr = Field(description="After slippage.")
    fee: DecimalStr


class AgentTradeRead(BacktestTradeRead):
    """A sell and what it closed: entry price and fee are the position's average cost
    and the share of its buys' fees that the sold quantity carries."""

    symbol: str


class AgentPositionRead(AppModel):
    symbol: str
    quantity: DecimalStr
    average_price: DecimalStr
    mark_price: DecimalStr = Field(description="The last close before the end.")


class BuyAndHoldRead(AppModel):
    """All the cash in one symbol at the first decision's fill, held to the end, with
    the same fees and slippage: a strategy backtest that is always long."""

    symbol: str
    final_equity: DecimalStr
    metrics: BacktestMetricsRead


class ModelCallsRead(AppModel):
    asked: int = Field(description="Decisions the provider was asked (and paid for).")
    cached: int = Field(description="Decisions answered from kept answers, free.")
    local: int = Field(description="Decisions of the local rules, free and never kept.")
    failed: int = Field(description="Decisions the model gave no valid answer to (held).")
    prompt_tokens: int
    completion_tokens: int
    cost: DecimalStr | None = Field(description="USD of the calls asked; null if unknown.")


class AgentBacktestResult(AppModel):
    symbols: list[str]
    timeframe: str = Field(description="The candles the agent sees (AGENT_CANDLE_TIMEFRAME).")
    fee_bps: dict[str, DecimalStr] = Field(description="Each symbol's fee per fill.")
    initial_cash: DecimalStr
    first_decision_at: datetime
    last_decision_at: datetime
    decisions: int
    actions: dict[str, int] = Field(
        description="Decisions by what came of them: buy, sell (filled), hold (hold, "
        "analysis, risk_check), refused (by the agent's risk checks or the user's trading "
        "limits, or nothing to fill), expired (a limit order the next candle did not "
        "reach), not_simulated (rebalance, cancel, stop orders), error (no valid answer)."
    )
    fills: list[AgentFillRead]
    trades: list[AgentTradeRead]
    open_positions: list[AgentPositionRead]
    final_cash: DecimalStr
    final_equity: DecimalStr
    fees: DecimalStr
    metrics: BacktestMetricsRead
    buy_and_hold: list[BuyAndHoldRead]
    equity_curve: list[EquityPoint] = Field(
        description=f"The mark at each decision, thinned to at most {MAX_EQUITY_POINTS} "
        "evenly spaced points (the first and the last always among them)."
    )
    model_calls: ModelCallsRead


class AgentBacktestRead(AppModel):
    agent_id: uuid.UUID
    run_id: uuid.UUID | None = Field(
        default=None,
        description="The stored run (GET /api/v1/backtests/{run_id}); null for an estimate.",
    )
    status: Literal["estimated", "completed", "cancelled"]
    estimate: AgentBacktestEstimate
    result: AgentBacktestResult | None = Field(default=None, description="Null for estimate_only.")
