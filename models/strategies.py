"""Strategies as the API shows them, and a strategy's backtest: its request and its run.

A strategy's `parameters` follow its type's model (models/strategy_params.py): they are
checked on write and stored with the defaults filled in. Only the five built-in types
can be created; rows of the seed's other types (ml_prediction, custom) stay readable.
Money is decimal strings; statistics (Sharpe, CAGR, the equity mark) are JSON numbers,
as in docs/backtests.md.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool
from pydantic_core import PydanticCustomError

from models.base import AppModel, DecimalStr, InputModel, IsoAwareDatetime
from models.enums import RiskLevel, StrategyType, Timeframe
from models.strategy_params import STRATEGY_KINDS, StrategyKind

MAX_BACKTEST_CANDLES = 200_000
MAX_EQUITY_POINTS = 500

# Why a type of the seed's vocabulary cannot be created (yet).
_NOT_BUILT = {
    "ml_prediction": "ml_prediction has no built-in model",
    "custom": "custom strategies have no parameter schema to check",
}
_KINDS_TEXT = ", ".join(STRATEGY_KINDS)


def _built_in(value: Any) -> Any:
    if isinstance(value, str) and value.strip() not in STRATEGY_KINDS:
        raw = value.strip()
        reason = _NOT_BUILT.get(raw, f"unknown strategy type {raw[:40]!r}")
        raise PydanticCustomError(
            "strategy_type",
            "{reason}; the types that can be created are {kinds}",
            {"reason": reason, "kinds": _KINDS_TEXT},
        )
    return value


def _storable(value: str) -> str:
    # PostgreSQL cannot store NUL in text, nor any database a lone surrogate.
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain the NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("not_text", "is not valid Unicode text") from None
    return value


Kind = Annotated[
    StrategyKind,
    BeforeValidator(_built_in),
    Field(description=f"One of the built-in types: {_KINDS_TEXT} (docs/backtests.md)."),
]
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_storable)]
Description = Annotated[str, Field(max_length=2000), AfterValidator(_storable)]
Symbol = Annotated[
    str, Field(min_length=1, max_length=32, examples=["BTC/USD"]), AfterValidator(_storable)
]
MAX_STRATEGY_SYMBOLS = 20
_SYMBOLS_TEXT = (
    "Traded symbols (BTC/USD or BTC-USD) on whose closed candles of `timeframe` the strategy, "
    "while active, computes its live signals (`trading_signals`); none: it computes none."
)
_TIMEFRAME_TEXT = "The candles its live signals are computed on."
_PARAMETERS_TEXT = (
    "The type's parameters (docs/backtests.md, 'The strategies' signals'); those left out "
    "take their defaults. momentum picks its model by `indicator` (rsi or roc)."
)


class StrategyCreate(InputModel):
    name: Name = Field(description="Unique among your strategies.")
    strategy_type: Kind
    description: Description | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, description=_PARAMETERS_TEXT)
    risk_level: RiskLevel = RiskLevel.MEDIUM
    # Strict: 0 or "yes" is not a boolean the schema admits.
    is_active: StrictBool = True
    symbols: list[Symbol] = Field(
        default_factory=list, max_length=MAX_STRATEGY_SYMBOLS, description=_SYMBOLS_TEXT
    )
    timeframe: Timeframe = Field(default=Timeframe.H1, description=_TIMEFRAME_TEXT)


class StrategyUpdate(InputModel):
    """Fields to change. A new type checks the parameters (sent, or else the stored ones)
    against that type; new parameters replace the stored ones whole."""

    name: Name | None = None
    strategy_type: Kind | None = None
    description: Description | None = None
    parameters: dict[str, Any] | None = Field(default=None, description=_PARAMETERS_TEXT)
    risk_level: RiskLevel | None = None
    is_active: StrictBool | None = None
    symbols: list[Symbol] | None = Field(
        default=None, max_length=MAX_STRATEGY_SYMBOLS, description=_SYMBOLS_TEXT
    )
    timeframe: Timeframe | None = Field(default=None, description=_TIMEFRAME_TEXT)


class StrategyRead(AppModel):
    id: uuid.UUID
    name: str
    description: str | None
    strategy_type: StrategyType
    parameters: dict[str, Any] = Field(description="As stored, defaults filled in.")
    risk_level: RiskLevel
    is_active: bool
    symbols: list[str] = Field(description=_SYMBOLS_TEXT)
    timeframe: Timeframe = Field(description=_TIMEFRAME_TEXT)
    performance_metrics: dict[str, Any] = Field(
        description="The latest backtest's metrics ({} before any)."
    )
    backtest_results: dict[str, Any] = Field(
        description="The latest backtest's summary: what ran, on which candles, its "
        "metrics and final equity ({} before any)."
    )
    created_at: datetime
    updated_at: datetime


class StrategyList(AppModel):
    items: list[StrategyRead]
    count: int


# -- backtests ---------------------------------------------------------------------------

Bps = Annotated[DecimalStr, Field(ge=0, le=1000, allow_inf_nan=False, examples=["20"])]


class BacktestRequest(InputModel):
    symbol: str = Field(min_length=1, max_length=32, examples=["BTC/USD"])
    timeframe: Timeframe = Timeframe.H1
    start: IsoAwareDatetime = Field(description="The first candle's open time at the earliest.")
    end: IsoAwareDatetime | None = Field(
        default=None, description="Candles closed before it (default: the market's clock)."
    )
    initial_cash: DecimalStr = Field(
        default=Decimal(10_000),
        gt=0,
        le=10**15,
        allow_inf_nan=False,
        description="Quote currency, to 1e-8.",
        examples=["10000"],
    )
    fee_bps: Bps | None = Field(default=None, description="Per fill; default the pair's taker.")
    slippage_bps: Bps = Field(default=Decimal(0), description="Of the fill's base price.")
    slippage_range_share: DecimalStr = Field(
        default=Decimal(0),
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Extra slippage, a share of the fill candle's high - low.",
    )
    fill: Literal["next_open", "next_close"] = "next_open"
    engine: Literal["vectorized", "reference"] = "vectorized"
    source: Literal["market", "imported"] = Field(
        default="market",
        description="market: the simulated market's candles of a traded symbol; imported: "
        "those imported for the symbol (POST /api/v1/market/candles/import), of any "
        "symbol, the period ending at `end` or now.",
    )


class BacktestConfigRead(AppModel):
    initial_cash: DecimalStr
    fee_bps: DecimalStr
    slippage_bps: DecimalStr
    slippage_range_share: DecimalStr
    quantity_step: DecimalStr
    fill: str


class BacktestTradeRead(AppModel):
    entry_time: datetime
    entry_price: DecimalStr
    exit_time: datetime
    exit_price: DecimalStr
    quantity: DecimalStr
    entry_fee: DecimalStr
    exit_fee: DecimalStr
    pnl: DecimalStr


class OpenPositionRead(AppModel):
    entry_time: datetime
    entry_price: DecimalStr
    quantity: DecimalStr
    entry_fee: DecimalStr


class EquityPoint(AppModel):
    time: datetime = Field(description="The candle's open time; marked at its close.")
    equity: float


class BacktestMetricsRead(AppModel):
    """docs/backtests.md, 'Metrics'; null where undefined on the data."""

    total_return: DecimalStr | None
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    win_rate: DecimalStr | None
    profit_factor: DecimalStr | None
    exposure: float | None
    trades: int


class BacktestSummary(AppModel):
    """What a run was and how it ended: stored as the strategy's `backtest_results`."""

    symbol: str
    timeframe: str
    source: str = Field(default="market", description="Whose candles: market or imported.")
    engine: str
    strategy_type: str
    parameters: dict[str, Any]
    config: BacktestConfigRead
    start: datetime
    end: datetime | None
    first_open: datetime
    last_open: datetime
    candles: int
    final_cash: DecimalStr
    final_equity: DecimalStr
    metrics: BacktestMetricsRead
    ran_at: datetime


class BacktestRead(BacktestSummary):
    strategy_id: uuid.UUID
    run_id: uuid.UUID = Field(description="The stored run: GET /api/v1/backtests/{run_id}.")
    trades: list[BacktestTradeRead]
    open_position: OpenPositionRead | None
    equity_curve: list[EquityPoint] = Field(
        description=f"The mark at each close, thinned to at most {MAX_EQUITY_POINTS} "
        "evenly spaced candles (the first and the last always among them)."
    )
