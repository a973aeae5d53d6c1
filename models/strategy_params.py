"""The typed parameters of each built-in strategy type, validated on write.

One model per type (momentum has two, chosen by its `indicator`), each refusing unknown
fields and naming the bad parameter in its error, so the strategies API can answer a
422 that says which one. Windows count candles; thresholds are floats because they
compare indicators, never money. What each parameter does is in docs/backtests.md and
services/backtests/signals.py.

Arbitrage is the seed's cross-venue spread, between the traded symbol and a
`reference_symbol` (the same asset elsewhere, or any symbol it should track): its
signals read both series, aligned on their open times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from models.base import InputModel

MAX_WINDOW = 10_000

StrategyKind = Literal["trend_following", "mean_reversion", "momentum", "breakout", "arbitrage"]
STRATEGY_KINDS: tuple[StrategyKind, ...] = (
    "trend_following",
    "mean_reversion",
    "momentum",
    "breakout",
    "arbitrage",
)


def _exit_above_entry(value: float, info: ValidationInfo) -> float:
    """A z-score rule's exit above its entry's mirror: else it would exit as it enters."""
    entry = info.data.get("entry_z")
    if entry is not None and value <= -entry:
        raise ValueError(f"exit_z must be greater than -entry_z ({-entry})")
    return value


class TrendFollowingParams(InputModel):
    """Moving-average crossover: long while the fast average is above the slow one."""

    fast_window: int = Field(default=20, ge=1, le=MAX_WINDOW)
    # validate_default: a fast window sent alone must still be below the default slow one.
    slow_window: int = Field(default=50, ge=2, le=MAX_WINDOW, validate_default=True)
    average: Literal["sma", "ema"] = "sma"

    @field_validator("slow_window")
    @classmethod
    def _slower_than_fast(cls, value: int, info: ValidationInfo) -> int:
        fast = info.data.get("fast_window")
        if fast is not None and value <= fast:
            raise ValueError(f"slow_window must be greater than fast_window ({fast})")
        return value


class MeanReversionParams(InputModel):
    """Bollinger z-score: long from z <= -entry_z until z >= exit_z."""

    window: int = Field(default=20, ge=2, le=MAX_WINDOW)
    entry_z: float = Field(default=2.0, gt=0, le=10, allow_inf_nan=False)
    exit_z: float = Field(default=0.0, ge=-10, le=10, allow_inf_nan=False, validate_default=True)

    _above_entry = field_validator("exit_z")(_exit_above_entry)


class RsiMomentumParams(InputModel):
    """Wilder's RSI: long from RSI >= entry until RSI <= exit."""

    indicator: Literal["rsi"] = "rsi"
    window: int = Field(default=14, ge=2, le=1000)
    entry: float = Field(default=60.0, gt=0, lt=100, allow_inf_nan=False)
    exit: float = Field(default=40.0, ge=0, lt=100, allow_inf_nan=False, validate_default=True)

    @field_validator("exit")
    @classmethod
    def _below_entry(cls, value: float, info: ValidationInfo) -> float:
        entry = info.data.get("entry")
        if entry is not None and value >= entry:
            raise ValueError(f"exit must be below entry ({entry})")
        return value


class RocMomentumParams(InputModel):
    """Rate of change: long while close / close `window` candles back - 1 > threshold."""

    indicator: Literal["roc"]
    window: int = Field(default=10, ge=1, le=MAX_WINDOW)
    threshold: float = Field(default=0.0, gt=-1, le=10, allow_inf_nan=False)


class BreakoutParams(InputModel):
    """Donchian channels: long from a close above the previous `entry_window` highs until
    a close below the previous `exit_window` lows."""

    entry_window: int = Field(default=20, ge=1, le=MAX_WINDOW)
    exit_window: int = Field(default=10, ge=1, le=MAX_WINDOW)


class ArbitrageParams(InputModel):
    """Spread against a reference symbol: the log of the traded symbol's close over the
    reference's, as a z-score over `window` candles. Long (the traded symbol is cheap
    against the reference) from z <= -entry_z until z >= exit_z."""

    reference_symbol: str = Field(min_length=1, max_length=32, examples=["ETH/USD"])
    window: int = Field(default=60, ge=2, le=MAX_WINDOW)
    entry_z: float = Field(default=2.0, gt=0, le=10, allow_inf_nan=False)
    exit_z: float = Field(default=0.0, ge=-10, le=10, allow_inf_nan=False, validate_default=True)

    @field_validator("reference_symbol")
    @classmethod
    def _normalized(cls, value: str) -> str:
        return value.strip().upper().replace("-", "/")

    _above_entry = field_validator("exit_z")(_exit_above_entry)


MomentumParams = RsiMomentumParams | RocMomentumParams
StrategyParams = (
    TrendFollowingParams
    | MeanReversionParams
    | RsiMomentumParams
    | RocMomentumParams
    | BreakoutParams
    | ArbitrageParams
)


class _MomentumIndicator(InputModel):
    # Validated alone first, so an unknown indicator is an error on `indicator` itself.
    model_config = ConfigDict(extra="ignore")

    indicator: Literal["rsi", "roc"] = "rsi"


def parse_parameters(kind: StrategyKind, parameters: Mapping[str, Any]) -> StrategyParams:
    """The parameters of a strategy of `kind`; pydantic's ValidationError names the bad
    one (its `loc` is the parameter's name)."""
    if kind == "trend_following":
        return TrendFollowingParams.model_validate(parameters)
    if kind == "mean_reversion":
        return MeanReversionParams.model_validate(parameters)
    if kind == "breakout":
        return BreakoutParams.model_validate(parameters)
    if kind == "arbitrage":
        return ArbitrageParams.model_validate(parameters)
    if kind == "momentum":
        indicator = _MomentumIndicator.model_validate(parameters).indicator
        if indicator == "roc":
            return RocMomentumParams.model_validate(parameters)
        return RsiMomentumParams.model_validate(parameters)
    raise ValueError(f"unknown strategy type {kind!r}; expected one of {', '.join(STRATEGY_KINDS)}")


def kind_of(params: StrategyParams) -> StrategyKind:
    """The strategy type a parameter model belongs to."""
    if isinstance(params, TrendFollowingParams):
        return "trend_following"
    if isinstance(params, MeanReversionParams):
        return "mean_reversion"
    if isinstance(params, BreakoutParams):
        return "breakout"
    if isinstance(params, ArbitrageParams):
        return "arbitrage"
    return "momentum"
