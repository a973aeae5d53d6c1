"""Backtests of a built-in strategy over a symbol's closed candles.

`BacktestService.run` reads the candles through the market data service (paged past its
1,000-candle limit), computes the strategy's signals (services/backtests/signals.py)
and runs one of the two engines on them, off the event loop: the reference loop
(engine.py) or the vectorised fast path (vectorized.py), whose trades are identical.
The rules of fills, costs and money are in docs/backtests.md.

Only closed candles are read: those lying wholly within [start, end) and closed by the
market's clock (its latest tick), so the candle still forming never enters a backtest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

import numpy.typing as npt
import structlog

from connectors.base import Candle, PairRules, Ticker
from core.exceptions import ValidationFailedError
from core.service_registry import ServiceHealth
from models.strategy_params import StrategyParams, kind_of
from services.backtests.engine import (
    BacktestConfig,
    BacktestResult,
    CandleSeries,
    FillTiming,
    InvalidBacktestError,
    run_reference,
)
from services.backtests.signals import Signals, signals_for
from services.backtests.vectorized import run_vectorized
from services.market_data.history import TIMEFRAMES, closed_candles
from utils.candles import timeframe_delta

log = structlog.get_logger(__name__)

EngineName = Literal["reference", "vectorized"]
Engine = Callable[[CandleSeries, npt.ArrayLike, BacktestConfig], BacktestResult]
ENGINES: dict[EngineName, Engine] = {"reference": run_reference, "vectorized": run_vectorized}
# What a pair without a fee schedule pays, as the paper exchange's default taker rate.
DEFAULT_FEE_BPS = Decimal(20)
T = TypeVar("T")


class MarketCandles(Protocol):
    """What a backtest reads of the market (MarketDataService provides it)."""

    def resolve_symbol(self, raw: str) -> str: ...

    def pair_rules(self, symbol: str) -> PairRules: ...

    def ticker(self, symbol: str) -> Ticker: ...

    async def candles(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
    ) -> list[Candle]: ...


@dataclass(frozen=True, slots=True)
class BacktestRun:
    """One backtest: what ran, on which candles, the signals and the result."""

    symbol: str
    timeframe: str
    engine: EngineName
    params: StrategyParams
    config: BacktestConfig
    series: CandleSeries
    signals: Signals
    result: BacktestResult

    @property
    def first_open(self) -> datetime:
        return self.series.time(0)

    @property
    def last_open(self) -> datetime:
        return self.series.time(len(self.series) - 1)


class BacktestService:
    def __init__(
        self, market: MarketCandles, *, default_fee_bps: Decimal = DEFAULT_FEE_BPS
    ) -> None:
        self._market = market
        self._default_fee_bps = default_fee_bps
        self.runs = 0

    async def start(self) -> None:
        """Nothing to start: a backtest holds no resources between runs."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy("ready", runs=self.runs)

    async def run(
        self,
        params: StrategyParams,
        *,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime | None = None,
        initial_cash: Decimal,
        fee_bps: Decimal | None = None,
        slippage_bps: Decimal = Decimal(0),
        slippage_range_share: Decimal = Decimal(0),
        fill: FillTiming = "next_open",
        engine: EngineName = "vectorized",
        max_candles: int | None = None,
    ) -> BacktestRun:
        """Backtests the strategy on the symbol's closed candles in [start, end) (end:
        the market's clock); the fee defaults to the pair's taker rate. A period that
        spans more than `max_candles` candles of the timeframe is refused unread."""
        resolved = self._market.resolve_symbol(symbol)
        if timeframe not in TIMEFRAMES:
            raise ValidationFailedError(
                f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}",
                details={"timeframe": timeframe},
            )
        if engine not in ENGINES:
            raise ValidationFailedError(
                f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}",
                details={"engine": engine},
            )
        for name, moment in (("start", start), ("end", end)):
            if moment is not None and moment.utcoffset() is None:
                raise ValidationFailedError(
                    f"{name} needs a time zone", details={name: str(moment)}
                )
        if end is not None and end <= start:
            raise ValidationFailedError(
                "end must be after start",
                details={"start": start.isoformat(), "end": end.isoformat()},
            )
        span = self.span(resolved, timeframe=timeframe, start=start, end=end)
        if span == 0:
            raise _no_candles(resolved, timeframe, start)
        if max_candles is not None and span > max_candles:
            raise ValidationFailedError(
                f"the period spans {span} {timeframe} candles, more than the "
                f"{max_candles} a backtest takes: shorten it or take a longer timeframe",
                details={"candles": span, "max_candles": max_candles},
            )
        rules = self._market.pair_rules(resolved)
        config = _checked(
            lambda: BacktestConfig(
                initial_cash=initial_cash,
                fee_bps=fee_bps if fee_bps is not None else self._fee_of(rules),
                slippage_bps=slippage_bps,
                slippage_range_share=slippage_range_share,
                quantity_step=rules.step_size,
                fill=fill,
            )
        )
        candles = await self.read_candles(resolved, timeframe=timeframe, start=start, end=end)
        if not candles:
            raise _no_candles(resolved, timeframe, start)
        began = time.perf_counter()
        try:
            series, signals, result = await asyncio.to_thread(
                _backtest, candles, params, config, engine
            )
        except InvalidBacktestError as e:  # inconsistent candles (low above the open, ...)
            raise ValidationFailedError(str(e), details={"field": e.field}) from e
        self.runs += 1
        log.info(
            "backtest_run",
            symbol=resolved,
            timeframe=timeframe,
            strategy=kind_of(params),
            engine=engine,
            candles=len(series),
            trades=len(result.trades),
            seconds=round(time.perf_counter() - began, 4),
        )
        return BacktestRun(resolved, timeframe, engine, params, config, series, signals, result)

    async def read_candles(
        self, symbol: str, *, timeframe: str, start: datetime, end: datetime | None = None
    ) -> list[Candle]:
        """The symbol's candles lying wholly within [start, end) and closed by the market's
        clock, oldest first, read a page of MAX_CANDLES at a time."""
        clock = self._market.ticker(symbol).timestamp
        until = clock if end is None else min(end, clock)
        return await closed_candles(
            self._market, symbol, timeframe=timeframe, start=start, until=until
        )

    def span(
        self, symbol: str, *, timeframe: str, start: datetime, end: datetime | None = None
    ) -> int:
        """How many candles of the timeframe [start, end) can hold closed by the market's
        clock: an upper bound of what `read_candles` returns, known without reading."""
        delta = timeframe_delta(timeframe)
        clock = self._market.ticker(symbol).timestamp
        try:
            last_open = (clock if end is None else min(end, clock)) - delta
        except OverflowError:  # an end at the first moment datetime has: nothing closed
            return 0
        return 0 if last_open < start else (last_open - start) // delta + 1

    def _fee_of(self, rules: PairRules) -> Decimal:
        return rules.taker_fee_bps if rules.taker_fee_bps is not None else self._default_fee_bps


def _no_candles(symbol: str, timeframe: str, start: datetime) -> ValidationFailedError:
    return ValidationFailedError(
        f"no closed {timeframe} candles of {symbol} in the period",
        details={"symbol": symbol, "timeframe": timeframe, "start": start.isoformat()},
    )


def _checked(build: Callable[[], T]) -> T:
    # The engines' refusals name the input; here they become the API's 422.
    try:
        return build()
    except InvalidBacktestError as e:
        raise ValidationFailedError(str(e), details={"field": e.field}) from e


def _backtest(
    candles: list[Candle], params: StrategyParams, config: BacktestConfig, engine: EngineName
) -> tuple[CandleSeries, Signals, BacktestResult]:
    # All of it off the event loop: a year of minutes is half a million Decimal candles.
    series = CandleSeries.from_candles(candles)
    signals = signals_for(series.ohlcv(), params)
    return series, signals, ENGINES[engine](series, signals.position, config)
