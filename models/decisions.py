"""What an agent decides and what it sees when deciding.

`Decision` is the one schema every provider returns (the built-in rule-based one and
the LLMs alike); `decision_json_schema()` is the same shape as a JSON Schema that
OpenAI's strict mode, Anthropic tools and OpenAI-compatible local servers all accept.
`AgentContext` is plain data the agent service fills from the database and the market
feed. Prices, quantities and money are `Decimal` (strings in JSON); indicator values
are floats, because they are analytics on a return series and never enter the ledger.
"""

from __future__ import annotations

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
    the order type fixes which of limit_price / stop_price must be present."""

    decision_type: DecisionType
    symbol: str | None = Field(default=None, min_length=1, max_length=32)
    side: OrderSide | None = None
    quantity: PositiveDecimal | None = None
    fraction_of_equity: Annotated[DecimalStr, Field(gt=0, le=1)] | None = None
    order_type: OrderType | None = None
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    reasoning: str = Field(min_length=1, max_length=4000)
    confidence_score: UnitDecimal
    target_weights: list[TargetWeight] | None = None

    @field_validator("symbol")
    @classmethod
    def _upper_symbol(cls, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.decision_type is DecisionType.TRADE:
            self._check_trade()
        elif self.decision_type is DecisionType.REBALANCE:
            self._check_rebalance()
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
    no numeric bounds (stated in descriptions; pydantic enforces them)."""
    properties: dict[str, Any] = {
        "decision_type": {
            "type": "string",
            "enum": [t.value for t in DecisionType],
            "description": "trade places an order; hold, analysis and risk_check do not; "
            "rebalance sets target_weights.",
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
        "reasoning": {
            "type": "string",
            "description": "Why, citing the numbers (indicators, prices, limits) behind it.",
        },
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


class DecisionSummary(AppModel):
    created_at: datetime
    decision_type: DecisionType
    symbol: str | None = None
    side: OrderSide | None = None
    status: str | None = None
    confidence_score: DecimalStr | None = None
    reasoning: str = ""


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
    recent_decisions: list[DecisionSummary] = Field(default_factory=list)

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
