"""Backtests of a built-in strategy over a symbol's closed candles.

`BacktestService.prepare` checks a run; `execute` reads the candles through the market
data service (paged past its 1,000-candle limit), computes the strategy's signals
(services/backtests/signals.py) and runs one of the two engines on them, off the event
loop: the reference loop (engine.py) or the vectorised fast path (vectorized.py), whose
trades are identical.
The rules of fills, costs and money are in docs/backtests.md.

Only closed candles are read: those lying wholly within [start, end) and closed by the
market's clock (its latest tick), so the candle still forming never enters a backtest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

import numpy.typing as npt
import structlog

from connectors.base import Candle, PairRules, Ticker
from core.exceptions import NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from database.orm.types import utcnow
from models.strategy_params import ArbitrageParams, StrategyParams, kind_of
from services.backtests.engine import (
    BacktestConfig,
    BacktestResult,
    CandleSeries,
    FillTiming,
    InvalidBacktestError,
    run_reference,
)
from services.backtests.signals import Signals, aligned, signals_for
from services.backtests.vectorized import run_vectorized
from services.files.service import normalize_symbol
from services.market_data.history import TIMEFRAMES, closed_candles
from utils.candles import timeframe_delta

log = structlog.get_logger(__name__)

EngineName = Literal["reference", "vectorized"]
# Whose candles: the simulated market's series, or one imported from a CSV
# (services/files/), of any symbol.
Source = Literal["market", "imported"]
# A pair the market does not trade has no rules: quantities to 1e-8.
IMPORTED_STEP = Decimal("0.00000001")
Engine = Callable[[CandleSeries, npt.ArrayLike, BacktestConfig], BacktestResult]
ENGINES: dict[EngineName, Engine] = {"reference": run_reference, "vectorized": run_vectorized}
# What a pair without a fee schedule pays, as the paper exchange's default taker rate.
DEFAULT_FEE_BPS = Decimal(20)
T = TypeVar("T")
# A run's progress: awaited with its stage and the share done (0-1); it may raise to
# stop the run (a job being cancelled). Reading the candles is most of a run's time.
Progress = Callable[[str, float], Awaitable[None]]
READ_SHARE = 0.9


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
class BacktestPlan:
    """A checked backtest, not yet run: the symbol as the market names it, the period,
    how many candles it spans at most, the engine and the costs."""

    symbol: str
    timeframe: str
    start: datetime
    end: datetime | None
    span: int
    engine: EngineName
    params: StrategyParams
    config: BacktestConfig
    source: Source = "market"


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
    source: Source = "market"

    @property
    def first_open(self) -> datetime:
        return self.series.time(0)

    @property
    def last_open(self) -> datetime:
        return self.series.time(len(self.series) - 1)


class ImportedCandles(Protocol):
    """What a backtest reads of imported candles (CandleImportService provides it)."""

    async def imported_candles(
        self, symbol: str, *, timeframe: str, start: datetime, end: datetime
    ) -> list[Candle]: ...


class BacktestService:
    def __init__(
        self,
        market: MarketCandles,
        *,
        imported: ImportedCandles | None = None,
        default_fee_bps: Decimal = DEFAULT_FEE_BPS,
    ) -> None:
        self._market = market
        self._imported = imported
        self._default_fee_bps = default_fee_bps
        self.runs = 0

    async def start(self) -> None:
        """Nothing to start: a backtest holds no resources between runs."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy("ready", runs=self.runs)

    def prepare(
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
        source: Source = "market",
    ) -> BacktestPlan:
        """Every check a run makes before reading a candle (a 404 or 422 naming what is
        wrong); the fee defaults to the pair's taker rate. A period that spans more than
        `max_candles` candles of the timeframe is refused unread. With source
        `imported`, the symbol's imported series is read (any symbol; the market's
        rules when it trades it, else quantities to 1e-8 and the default fee), and the
        period ends at `end` or now."""
        if source == "imported":
            resolved = normalize_symbol(symbol)
        else:
            resolved = self._market.resolve_symbol(symbol)
        if isinstance(params, ArbitrageParams):
            _check_reference(params, resolved, source, self._market)
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
        if source == "imported":
            if self._imported is None:
                raise ValidationFailedError(
                    "imported candles are not available here", details={"source": source}
                )
            end = end if end is not None else utcnow()
            span = _span(start, end, timeframe)
        else:
            span = self.span(resolved, timeframe=timeframe, start=start, end=end)
        if span == 0:
            raise _no_candles(resolved, timeframe, start)
        if max_candles is not None and span > max_candles:
            raise ValidationFailedError(
                f"the period spans {span} {timeframe} candles, more than the "
                f"{max_candles} a backtest takes: shorten it or take a longer timeframe",
                details={"candles": span, "max_candles": max_candles},
            )
        rules = self._rules_of(resolved)
        config = _checked(
            lambda: BacktestConfig(
                initial_cash=initial_cash,
                fee_bps=fee_bps if fee_bps is not None else self._fee_of(rules),
                slippage_bps=slippage_bps,
                slippage_range_share=slippage_range_share,
                quantity_step=IMPORTED_STEP if rules is None else rules.step_size,
                fill=fill,
            )
        )
        return BacktestPlan(resolved, timeframe, start, end, span, engine, params, config, source)

    async def execute(self, plan: BacktestPlan, *, progress: Progress | None = None) -> BacktestRun:
        """Reads the plan's candles and runs its engine on them, off the event loop;
        `progress` is awaited after each page read and before computing."""
        on_page = None
        if progress is not None:
            report = progress

            async def on_page(read: int) -> None:
                await report("reading", READ_SHARE * min(read / plan.span, 1.0))

        candles = await self._series(plan, plan.symbol, on_page)
        reference: list[Candle] | None = None
        if isinstance(plan.params, ArbitrageParams):
            theirs = await self._series(plan, plan.params.reference_symbol, None)
            candles, reference = aligned(candles, theirs, key=lambda c: c.open_time)
        if not candles:
            raise _no_candles(plan.symbol, plan.timeframe, plan.start)
        if progress is not None:
            await progress("computing", READ_SHARE)
        began = time.perf_counter()
        try:
            series, signals, result = await asyncio.to_thread(
                _backtest, candles, plan.params, plan.config, plan.engine, reference
            )
        except InvalidBacktestError as e:  # inconsistent candles (low above the open, ...)
            raise ValidationFailedError(str(e), details={"field": e.field}) from e
        self.runs += 1
        log.info(
            "backtest_run",
            symbol=plan.symbol,
            timeframe=plan.timeframe,
            strategy=kind_of(plan.params),
            engine=plan.engine,
            candles=len(series),
            trades=len(result.trades),
            seconds=round(time.perf_counter() - began, 4),
        )
        return BacktestRun(
            plan.symbol,
            plan.timeframe,
            plan.engine,
            plan.params,
            plan.config,
            series,
            signals,
            result,
            plan.source,
        )

    async def read_candles(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime,
        end: datetime | None = None,
        on_page: Callable[[int], Awaitable[None]] | None = None,
    ) -> list[Candle]:
        """The symbol's candles lying wholly within [start, end) and closed by the market's
        clock, oldest first, read a page of MAX_CANDLES at a time (`on_page` after each)."""
        clock = self._market.ticker(symbol).timestamp
        until = clock if end is None else min(end, clock)
        return await closed_candles(
            self._market, symbol, timeframe=timeframe, start=start, until=until, on_page=on_page
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

    async def _series(
        self, plan: BacktestPlan, symbol: str, on_page: Callable[[int], Awaitable[None]] | None
    ) -> list[Candle]:
        """The plan's closed candles of the symbol, from the plan's source."""
        if plan.source == "imported" and self._imported is not None and plan.end is not None:
            delta = timeframe_delta(plan.timeframe)
            read = await self._imported.imported_candles(
                symbol, timeframe=plan.timeframe, start=plan.start, end=plan.end
            )
            return [c for c in read if c.open_time + delta <= plan.end]
        return await self.read_candles(
            symbol, timeframe=plan.timeframe, start=plan.start, end=plan.end, on_page=on_page
        )

    def _rules_of(self, symbol: str) -> PairRules | None:
        try:
            return self._market.pair_rules(symbol)
        except NotFoundError:  # an imported series of a pair the market does not trade
            return None

    def _fee_of(self, rules: PairRules | None) -> Decimal:
        if rules is None or rules.taker_fee_bps is None:
            return self._default_fee_bps
        return rules.taker_fee_bps


def _check_reference(
    params: ArbitrageParams, symbol: str, source: Source, market: MarketCandles
) -> None:
    """An arbitrage strategy's reference: not the traded symbol itself, and traded by
    the market when its candles are the market's."""
    reference = params.reference_symbol
    if reference == symbol:
        raise ValidationFailedError(
            f"the arbitrage strategy's reference_symbol is {symbol}, the symbol backtested: "
            "a spread needs two symbols",
            details={"symbol": symbol, "reference_symbol": reference},
        )
    if source == "market":
        market.resolve_symbol(reference)


def _span(start: datetime, end: datetime, timeframe: str) -> int:
    """How many candles of the timeframe [start, end) can hold whole."""
    delta = timeframe_delta(timeframe)
    last_open = end - delta
    return 0 if last_open < start else (last_open - start) // delta + 1


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
    candles: list[Candle],
    params: StrategyParams,
    config: BacktestConfig,
    engine: EngineName,
    reference: list[Candle] | None = None,
) -> tuple[CandleSeries, Signals, BacktestResult]:
    # All of it off the event loop: a year of minutes is half a million Decimal candles.
    series = CandleSeries.from_candles(candles)
    theirs = None if reference is None else CandleSeries.from_candles(reference).ohlcv()
    signals = signals_for(series.ohlcv(), params, reference=theirs)
    return series, signals, ENGINES[engine](series, signals.position, config)
