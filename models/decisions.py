"""What an agent decides and what it sees when deciding.

`Decision` is the one schema every provider returns (the built-in rule-based one and
the LLMs alike); `decision_json_schema()` is the same shape as a JSON Schema that
OpenAI's strict mode, Anthropic tools and OpenAI-compatible local servers all accept.
`AgentContext` is plain data the agent service fills from the database and the market
feed. Prices, quantities and money are `Decimal` (strings in JSON); indicator values
are floats, because they are analytics on a return series and never enter the ledger.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from models.base import AppModel, DecimalStr, InputModel
from models.enums import DecisionType, OrderSide, OrderType

PositiveDecimal = Annotated[DecimalStr, Field(gt=0)]
UnitDecimal = Annotated[DecimalStr, Field(ge=0, le=1)]


class TargetWeight(InputModel):
    symbol: str = Field(min_length=1, max_length=32)
    weight: UnitDecimal


_ORDER_FIELDS = (
    "side",
    "quantity",
    "fraction_of_equity",
    "order_type",
    "limit_price",
    "stop_price",
)


class Decision(InputModel):
    """One decision. A trade names a side and exactly one of quantity / fraction_of_equity;
    the order type fixes which of limit_price / stop_price must be present. A cancel
    names the open orders to cancel (`order_ids`) and nothing else of an order."""

    # First: strict decoding writes keys in schema order, so the model states its
    # rationale before the action it commits to.
    reasoning: str = Field(min_length=1, max_length=4000)
    decision_type: DecisionType
    symbol: str | None = Field(default=None, min_length=1, max_length=32)
    side: OrderSide | None = None
    quantity: PositiveDecimal | None = None
    fraction_of_equity: Annotated[DecimalStr, Field(gt=0, le=1)] | None = None
    order_type: OrderType | None = None
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    confidence_score: UnitDecimal
    target_weights: list[TargetWeight] | None = None
    order_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=50)

    @field_validator("symbol")
    @classmethod
    def _upper_symbol(cls, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.order_ids is not None and self.decision_type is not DecisionType.CANCEL:
            raise ValueError("order_ids belong to a cancel decision only")
        if self.decision_type is DecisionType.TRADE:
            self._check_trade()
        elif self.decision_type is DecisionType.REBALANCE:
            self._check_rebalance()
        elif self.decision_type is DecisionType.CANCEL:
            self._check_cancel()
        else:
            present = [name for name in _ORDER_FIELDS if getattr(self, name) is not None]
            if present:
                raise ValueError(
                    f"a {self.decision_type} decision carries no order fields; "
                    f"remove {', '.join(present)}"
                )
            if self.target_weights is not None:
                raise ValueError("target_weights belong to a rebalance decision only")
        return self

    def _check_trade(self) -> None:
        if self.symbol is None:
            raise ValueError("a trade needs a symbol")
        if self.side is None:
            raise ValueError("a trade needs a side (buy or sell)")
        if (self.quantity is None) == (self.fraction_of_equity is None):
            raise ValueError("a trade needs exactly one of quantity or fraction_of_equity")
        if self.target_weights is not None:
            raise ValueError("target_weights belong to a rebalance decision only")
        order_type = self.order_type or OrderType.MARKET
        needs_limit = order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_limit and self.limit_price is None:
            raise ValueError(f"a {order_type} order needs limit_price")
        if not needs_limit and self.limit_price is not None:
            raise ValueError(f"a {order_type} order takes no limit_price")
        if needs_stop and self.stop_price is None:
            raise ValueError(f"a {order_type} order needs stop_price")
        if not needs_stop and self.stop_price is not None:
            raise ValueError(f"a {order_type} order takes no stop_price")
        # A missing order type means market; store it explicitly so readers need not guess.
        self.order_type = order_type

    def _check_cancel(self) -> None:
        present = [name for name in _ORDER_FIELDS if getattr(self, name) is not None]
        if present or self.target_weights is not None:
            present += ["target_weights"] if self.target_weights is not None else []
            raise ValueError(f"a cancel carries order_ids only; remove {', '.join(present)}")
        if not self.order_ids:
            raise ValueError("a cancel needs order_ids: the open orders to cancel")
        if len(set(self.order_ids)) != len(self.order_ids):
            raise ValueError("order_ids name an order twice")

    def _check_rebalance(self) -> None:
        present = [name for name in _ORDER_FIELDS if getattr(self, name) is not None]
        if present:
            raise ValueError(
                f"a rebalance carries target_weights only; remove {', '.join(present)}"
            )
        if not self.target_weights:
            raise ValueError("a rebalance needs target_weights")
        symbols = [w.symbol.upper() for w in self.target_weights]
        if len(set(symbols)) != len(symbols):
            raise ValueError("target_weights name a symbol twice")
        total = sum((w.weight for w in self.target_weights), Decimal(0))
        if total > 1:
            raise ValueError(f"target_weights sum to {total}, more than 1 (the rest is cash)")


DECISION_TOOL_NAME = "submit_decision"
DECISION_SCHEMA_NAME = "trading_decision"


def _nullable(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], "description": description, **extra}


def decision_json_schema() -> dict[str, Any]:
    """The Decision as a JSON Schema in the subset OpenAI's strict mode accepts: every
    property listed in `required` (optional ones are nullable), no additional properties,
    no numeric bounds (stated in descriptions; pydantic enforces them). Properties are
    in `Decision`'s field order, reasoning first: strict decoding writes them so."""
    properties: dict[str, Any] = {
        # First, as in `Decision`: the rationale is written before the action.
        "reasoning": {
            "type": "string",
            "description": "Why, citing the numbers (indicators, prices, limits) behind it.",
        },
        "decision_type": {
            "type": "string",
            "enum": [t.value for t in DecisionType],
            "description": "trade places an order; hold, analysis and risk_check do not; "
            "rebalance sets target_weights; cancel cancels the open orders in order_ids.",
        },
        "symbol": _nullable("string", "The symbol traded or analysed, one of the agent's."),
        "side": {
            "type": ["string", "null"],
            "enum": [*(s.value for s in OrderSide), None],
            "description": "buy or sell; required for a trade, null otherwise.",
        },
        "quantity": _nullable(
            "string",
            "Base-asset amount as a decimal string such as '0.25'. A trade sets exactly "
            "one of quantity or fraction_of_equity.",
        ),
        "fraction_of_equity": _nullable(
            "number", "Order value as a fraction of account equity, above 0 and at most 1."
        ),
        "order_type": {
            "type": ["string", "null"],
            "enum": [*(t.value for t in OrderType), None],
            "description": "Order type of a trade (market when null).",
        },
        "limit_price": _nullable(
            "string", "Decimal string; required for limit and stop_limit orders, else null."
        ),
        "stop_price": _nullable(
            "string", "Decimal string; required for stop and stop_limit orders, else null."
        ),
        "confidence_score": {"type": "number", "description": "Confidence from 0 to 1."},
        "target_weights": {
            "type": ["array", "null"],
            "description": "Rebalance only: target portfolio weights (0 to 1, summing to at "
            "most 1; the rest stays cash).",
            "items": {
                "type": "object",
                "properties": {
                    "symbol": {"type": "string"},
                    "weight": {"type": "number"},
                },
                "required": ["symbol", "weight"],
                "additionalProperties": False,
            },
        },
        "order_ids": {
            "type": ["array", "null"],
            "description": "Cancel only: ids of your open orders (open_orders, placed by "
            "you) to cancel; null otherwise.",
            "items": {"type": "string"},
        },
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


class RiskTolerance(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class CandleData(AppModel):
    """One OHLCV candle; field names match `connectors.base.Candle`, so
    `CandleData.model_validate(candle)` reads a connector candle directly."""

    open_time: datetime
    open: DecimalStr
    high: DecimalStr
    low: DecimalStr
    close: DecimalStr
    volume: DecimalStr
    partial: bool = Field(
        default=False,
        description="True on a candle still open (the market's latest, not yet closed): "
        "its close is the latest price and its high, low and volume still change, so "
        "indicators computed on it repaint until it closes.",
    )


class TickerData(AppModel):
    """Field names match `connectors.base.Ticker`."""

    last: DecimalStr
    bid: DecimalStr | None = None
    ask: DecimalStr | None = None
    volume_24h: DecimalStr | None = None
    change_percent_24h: DecimalStr | None = None
    timestamp: datetime | None = None


class IndicatorParams(AppModel):
    sma_fast: int = Field(default=10, ge=2)
    sma_slow: int = Field(default=30, ge=3)
    ema_fast: int = Field(default=12, ge=2)
    ema_slow: int = Field(default=26, ge=3)
    macd_signal: int = Field(default=9, ge=2)
    rsi_period: int = Field(default=14, ge=2)
    bollinger_period: int = Field(default=20, ge=2)
    bollinger_k: float = Field(default=2.0, gt=0)
    momentum_lookback: int = Field(default=10, ge=1)
    # A crossover this many candles old or younger counts as fresh.
    crossover_max_age: int = Field(default=3, ge=0)


class IndicatorSnapshot(AppModel):
    """Latest indicator values over a symbol's closes; None where there is too little data.

    Floats: these are analytics, never money. `*_prev` is the value one candle earlier.
    `sma_cross` is the direction of the last fast/slow SMA crossover and
    `sma_cross_age` how many candles ago it happened (0 = on the last candle).
    """

    params: IndicatorParams = Field(default_factory=IndicatorParams)
    sample_size: int
    last_close: float | None = None
    sma_fast: float | None = None
    sma_slow: float | None = None
    sma_fast_prev: float | None = None
    sma_slow_prev: float | None = None
    sma_cross: OrderSide | None = None
    sma_cross_age: int | None = None
    ema_fast: float | None = None
    ema_slow: float | None = None
    rsi: float | None = None
    bollinger_upper: float | None = None
    bollinger_middle: float | None = None
    bollinger_lower: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_histogram: float | None = None
    momentum_return: float | None = None
    volatility: float | None = None


class SymbolContext(AppModel):
    symbol: str
    ticker: TickerData | None = None
    timeframe: str = "1h"
    candles: list[CandleData] = Field(default_factory=list)
    indicators: IndicatorSnapshot | None = None

    @property
    def price(self) -> Decimal | None:
        """Last traded price, else the last candle's close."""
        if self.ticker is not None:
            return self.ticker.last
        return self.candles[-1].close if self.candles else None


class PositionData(AppModel):
    symbol: str
    quantity: DecimalStr
    average_price: DecimalStr
    market_value: DecimalStr | None = None
    unrealized_pnl: DecimalStr | None = None


class PortfolioData(AppModel):
    cash: DecimalStr
    equity: DecimalStr
    positions: list[PositionData] = Field(default_factory=list)

    def position(self, symbol: str) -> PositionData | None:
        wanted = symbol.upper()
        return next((p for p in self.positions if p.symbol.upper() == wanted), None)


class RiskBudget(AppModel):
    """Limits in force and what is left of them now; None means no such limit."""

    max_position_value: DecimalStr | None = None
    max_order_value: DecimalStr | None = None
    max_open_positions: int | None = None
    max_daily_loss: DecimalStr | None = None
    daily_loss_remaining: DecimalStr | None = None
    daily_cost_budget_remaining: DecimalStr | None = None
    min_confidence: DecimalStr | None = Field(
        default=None, description="A trade or rebalance below this confidence is refused."
    )
    max_order_pct: DecimalStr | None = Field(
        default=None, description="Largest single buy, in percent of equity."
    )
    max_daily_loss_pct: DecimalStr | None = Field(
        default=None,
        description="Once the day's loss reaches this percent of start-of-day equity, "
        "buys are refused.",
    )
    open_positions: int | None = Field(
        default=None,
        description="Symbols held or bought by an open order: the positions counted.",
    )
    open_positions_remaining: int | None = Field(
        default=None, description="New positions still allowed (None: no limit)."
    )


class SymbolTerms(AppModel):
    """What trading one symbol costs this agent and what its limits leave of it now."""

    symbol: str
    maker_fee_bps: DecimalStr = Field(description="Fee of a fill that rested on the book.")
    taker_fee_bps: DecimalStr = Field(description="Fee of a fill that took liquidity.")
    quantity_step: DecimalStr = Field(description="Quantities are rounded down to this.")
    price_tick: DecimalStr = Field(description="Prices are rounded to this.")
    min_quantity: DecimalStr
    min_notional: DecimalStr = Field(description="Smallest order value accepted.")
    position_value: DecimalStr = Field(
        description="Exposure now: the holding at its mark plus open buys still to fill."
    )
    position_room: DecimalStr | None = Field(
        default=None,
        description="What more may be bought before the position limit (0 when reached).",
    )


class OpenOrderData(AppModel):
    """One of the account's orders still open (resting or waiting on its stop)."""

    id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    remaining_quantity: DecimalStr = Field(description="What is still to fill.")
    limit_price: DecimalStr | None = None
    stop_price: DecimalStr | None = None
    age_seconds: int = Field(ge=0, description="How long ago it was placed.")
    placed_by_agent: bool = Field(
        default=True, description="Placed by this agent: a cancel decision may name it."
    )


class DecisionSummary(AppModel):
    created_at: datetime
    decision_type: DecisionType
    symbol: str | None = None
    side: OrderSide | None = None
    status: str | None = None
    confidence_score: DecimalStr | None = None
    reasoning: str = ""


class StrategySignalData(AppModel):
    """The latest signal of a strategy the agent follows, on a symbol it trades: data
    read from a closed candle (services/strategies/live.py), not an instruction."""

    strategy: str = Field(description="The strategy's name, as the agent lists it.")
    strategy_type: str
    symbol: str
    timeframe: str
    candle_open_time: datetime
    action: str = Field(description="buy: the strategy entered; sell: it left; hold.")
    position: int = Field(description="What it wants held: 1 long, 0 flat.")
    strength: DecimalStr
    confidence: DecimalStr
    price: DecimalStr


# Words an operator may put in a personality instead of a number.
_AGGRESSION_WORDS = {"low": 0.2, "conservative": 0.2, "medium": 0.5, "moderate": 0.5}
_AGGRESSION_WORDS |= {"balanced": 0.5, "high": 0.8, "aggressive": 0.8}


class AgentContext(AppModel):
    """Everything an agent sees when it decides."""

    agent_id: str
    agent_name: str
    personality: dict[str, Any] = Field(default_factory=dict)
    strategies: list[str] = Field(default_factory=list)
    risk_tolerance: UnitDecimal = Decimal("0.5")
    # Largest position, in percent of equity (the agent's `max_position_pct`).
    max_position_pct: Annotated[DecimalStr, Field(gt=0, le=100)] = Decimal(10)
    quote_currency: str = "USD"
    as_of: datetime
    symbols: list[SymbolContext]
    portfolio: PortfolioData
    risk: RiskBudget = Field(default_factory=RiskBudget)
    # Per symbol: its fees, its pair's rules and the room the position limit leaves.
    terms: list[SymbolTerms] = Field(default_factory=list)
    open_orders: list[OpenOrderData] = Field(default_factory=list)
    # Newest first.
    recent_decisions: list[DecisionSummary] = Field(default_factory=list)
    # The latest signal of each listed strategy on each of the agent's symbols.
    signals: list[StrategySignalData] = Field(default_factory=list)

    @property
    def aggression(self) -> float:
        """`personality['aggression']` in 0..1, from a number or a word such as 'high';
        0.5 when absent or unreadable."""
        value = self.personality.get("aggression")
        if isinstance(value, bool):
            return 0.5
        if isinstance(value, int | float | Decimal):
            return min(1.0, max(0.0, float(value)))
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _AGGRESSION_WORDS:
                return _AGGRESSION_WORDS[word]
            try:
                return min(1.0, max(0.0, float(word)))
            except ValueError:
                return 0.5
        return 0.5

    @property
    def risk_level(self) -> RiskTolerance:
        if self.risk_tolerance < Decimal("0.34"):
            return RiskTolerance.LOW
        if self.risk_tolerance > Decimal("0.66"):
            return RiskTolerance.HIGH
        return RiskTolerance.MEDIUM

    def symbol(self, symbol: str) -> SymbolContext | None:
        wanted = symbol.upper()
        return next((s for s in self.symbols if s.symbol.upper() == wanted), None)
