"""The look-ahead check: does a strategy's past change when its future is cut off?

A strategy without look-ahead computes candle i's signals from candles 0..i only, so
recomputing them on the series cut after candle i gives the same values for candles
0..i. A strategy that peeks (a centred average, `close[i + 1]`, an indicator normalised
over the whole series) gives other values there: it repaints, and its backtest trades on
information it could not have had.

`check_lookahead` cuts the series at the candles that make trades (each change of the
wanted position: an entry or an exit), recomputes the signals on `ohlcv.head(i + 1)`
for each cut point i and compares them with the full run's on every candle 0..i:
`position` exactly, `strength`, `confidence` and each of the strategy's indicators
within TOLERANCE (NaN equals NaN). It is pure and synchronous; `lookahead_check` is the
route's entry: it reads the stored strategy and the period's closed candles and runs the
check off the event loop. docs/backtests.md, 'Look-ahead check', states the choices.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

from connectors.base import Candle
from core.exceptions import ValidationFailedError
from models.lookahead import (
    MAX_LOOKAHEAD_CUTS,
    MAX_LOOKAHEAD_FINDINGS,
    LookaheadFinding,
    LookaheadRead,
    LookaheadRequest,
)
from models.strategies import MAX_BACKTEST_CANDLES
from models.strategy_params import ArbitrageParams, StrategyParams, kind_of
from services.backtests.engine import CandleSeries, InvalidBacktestError
from services.backtests.service import BacktestService
from services.backtests.signals import Ohlcv, Signals, aligned, signals_for

log = structlog.get_logger(__name__)

SignalFunction = Callable[[Ohlcv], Signals]
# Relative, with an absolute floor for values near 0: float noise is ~1e-16 of a value,
# and a value that repaints moves by far more than a billionth of itself.
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12
_BUILT_IN = ("position", "strength", "confidence")


@dataclass(frozen=True, slots=True)
class Finding:
    """At cut point `cut`, the value `name` differed first at candle `bar` (and on
    `bars_changed` candles up to the cut); NaN where it was undefined."""

    cut: int
    bar: int
    name: str
    full: float
    truncated: float
    bars_changed: int


@dataclass(frozen=True, slots=True)
class LookaheadReport:
    candles: int
    position_changes: int
    cut_points: tuple[int, ...]
    findings: tuple[Finding, ...]

    @property
    def repainting(self) -> bool:
        return bool(self.findings)

    def changed(self) -> list[str]:
        """The names that changed, in the order they were first found."""
        return list(dict.fromkeys(f.name for f in self.findings))


def cut_points(changes: npt.NDArray[np.intp], bound: int | None) -> tuple[int, ...]:
    """The changes to cut at: all of them, or `bound` evenly spaced ones with the first
    and the last among them."""
    if bound is None or len(changes) <= bound:
        return tuple(int(i) for i in changes)
    if bound == 1:
        return (int(changes[-1]),)
    picks = np.unique(np.round(np.linspace(0, len(changes) - 1, bound)).astype(np.intp))
    return tuple(int(changes[k]) for k in picks)


def check_lookahead(
    compute: SignalFunction, ohlcv: Ohlcv, *, max_cut_points: int | None = MAX_LOOKAHEAD_CUTS
) -> LookaheadReport:
    """Recomputes the signals on the series cut after each cut point (each change of
    the full run's position, or `max_cut_points` of them evenly spaced) and reports every
    value of candles 0..cut that differs from the full run's."""
    whole = _signals_of(compute, ohlcv)
    changes = whole.changes()
    cuts = cut_points(changes, max_cut_points)
    findings: list[Finding] = []
    for cut in cuts:
        part = _signals_of(compute, ohlcv.head(cut + 1))
        findings.extend(_differences(cut, whole, part))
    return LookaheadReport(len(ohlcv), len(changes), cuts, tuple(findings))


def _signals_of(compute: SignalFunction, ohlcv: Ohlcv) -> Signals:
    signals = compute(ohlcv)
    arrays = {name: getattr(signals, name) for name in _BUILT_IN} | dict(signals.indicators)
    for name, values in arrays.items():
        if len(values) != len(ohlcv):
            raise ValueError(f"the signal function gave {len(values)} {name} for {len(ohlcv)}")
    return signals


def _differences(cut: int, whole: Signals, part: Signals) -> Iterator[Finding]:
    count = cut + 1
    full_position = whole.position[:count]
    changed = full_position != part.position
    if changed.any():
        yield _finding(cut, "position", full_position, part.position, changed)
    names = [
        *_BUILT_IN[1:],
        *whole.indicators,
        *(n for n in part.indicators if n not in whole.indicators),
    ]
    for name in names:
        full = _values(whole, name, len(whole))[:count]
        truncated = _values(part, name, count)
        # The same bits (the built-ins' case, NaNs included) need no tolerance: one pass.
        if np.array_equal(full.view(np.int64), truncated.view(np.int64)):
            continue
        differs = ~np.isclose(
            full, truncated, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE, equal_nan=True
        )
        if differs.any():
            yield _finding(cut, name, full, truncated, differs)


def _values(signals: Signals, name: str, length: int) -> npt.NDArray[np.float64]:
    if name in _BUILT_IN:
        return np.asarray(getattr(signals, name), dtype=np.float64)
    # An indicator one run has and the other lacks is undefined (NaN) in the other.
    values = signals.indicators.get(name)
    return np.full(length, np.nan) if values is None else np.asarray(values, dtype=np.float64)


def _finding(
    cut: int,
    name: str,
    full: npt.NDArray[np.generic],
    truncated: npt.NDArray[np.generic],
    differs: npt.NDArray[np.bool_],
) -> Finding:
    bar = int(np.argmax(differs))
    return Finding(
        cut, bar, name, float(full[bar]), float(truncated[bar]), int(np.count_nonzero(differs))
    )


class RunnableStrategies(Protocol):
    """What the check reads of a strategy (StrategyService provides it)."""

    async def runnable_params(
        self, user_id: uuid.UUID, strategy_id: uuid.UUID
    ) -> StrategyParams: ...


async def lookahead_check(
    strategies: RunnableStrategies,
    backtests: BacktestService,
    user_id: uuid.UUID,
    strategy_id: uuid.UUID,
    request: LookaheadRequest,
) -> LookaheadRead:
    """Checks the user's strategy's stored parameters for look-ahead over the symbol's
    closed candles in the period (at most MAX_BACKTEST_CANDLES, as a backtest)."""
    params = await strategies.runnable_params(user_id, strategy_id)
    timeframe = request.timeframe.value
    start, end = request.start, request.end
    if end is not None and end <= start:
        raise ValidationFailedError(
            "end must be after start",
            details={"start": start.isoformat(), "end": end.isoformat()},
        )
    span = backtests.span(request.symbol, timeframe=timeframe, start=start, end=end)
    if span > MAX_BACKTEST_CANDLES:
        raise ValidationFailedError(
            f"the period spans {span} {timeframe} candles, more than the "
            f"{MAX_BACKTEST_CANDLES} a look-ahead check takes: shorten it or take a longer "
            "timeframe",
            details={"candles": span, "max_candles": MAX_BACKTEST_CANDLES},
        )
    candles = (
        []
        if span == 0
        else await backtests.read_candles(request.symbol, timeframe=timeframe, start=start, end=end)
    )
    reference: list[Candle] | None = None
    if isinstance(params, ArbitrageParams) and candles:
        theirs = await backtests.read_candles(
            params.reference_symbol, timeframe=timeframe, start=start, end=end
        )
        candles, reference = aligned(candles, theirs, key=lambda c: c.open_time)
    if not candles:
        raise ValidationFailedError(
            f"no closed {timeframe} candles of {request.symbol} in the period",
            details={"symbol": request.symbol, "timeframe": timeframe, "start": start.isoformat()},
        )
    began = time.perf_counter()
    try:
        series, report = await asyncio.to_thread(
            _check_candles, candles, params, request.max_cut_points, reference
        )
    except InvalidBacktestError as e:  # inconsistent candles (low above the open, ...)
        raise ValidationFailedError(str(e), details={"field": e.field}) from e
    log.info(
        "lookahead_checked",
        strategy_id=str(strategy_id),
        strategy=kind_of(params),
        candles=report.candles,
        cut_points=len(report.cut_points),
        findings=len(report.findings),
        seconds=round(time.perf_counter() - began, 4),
    )
    return _read(strategy_id, params, candles[0], timeframe, series, report)


def _check_candles(
    candles: list[Candle],
    params: StrategyParams,
    bound: int | None,
    reference: list[Candle] | None = None,
) -> tuple[CandleSeries, LookaheadReport]:
    series = CandleSeries.from_candles(candles)
    theirs = None if reference is None else CandleSeries.from_candles(reference).ohlcv()

    def compute(ohlcv: Ohlcv) -> Signals:
        # Cut where the traded series is cut: the reference up to the same candle.
        cut = None if theirs is None else theirs.head(len(ohlcv))
        return signals_for(ohlcv, params, reference=cut)

    limit = MAX_LOOKAHEAD_CUTS if bound is None else min(bound, MAX_LOOKAHEAD_CUTS)
    return series, check_lookahead(compute, series.ohlcv(), max_cut_points=limit)


def _read(
    strategy_id: uuid.UUID,
    params: StrategyParams,
    first: Candle,
    timeframe: str,
    series: CandleSeries,
    report: LookaheadReport,
) -> LookaheadRead:
    findings = [
        LookaheadFinding(
            cut=f.cut,
            bar=f.bar,
            time=series.time(f.bar),
            name=f.name,
            full=_number(f.full),
            truncated=_number(f.truncated),
            bars_changed=f.bars_changed,
        )
        for f in report.findings[:MAX_LOOKAHEAD_FINDINGS]
    ]
    return LookaheadRead(
        strategy_id=strategy_id,
        strategy_type=kind_of(params),
        parameters=params.model_dump(mode="json"),
        symbol=first.symbol,
        timeframe=timeframe,
        first_open=series.time(0),
        last_open=series.time(len(series) - 1),
        candles=report.candles,
        position_changes=report.position_changes,
        cut_points=len(report.cut_points),
        repainting=report.repainting,
        changed=report.changed(),
        findings_total=len(report.findings),
        findings=findings,
        summary=summary(report),
    )


def summary(report: LookaheadReport) -> str:
    """The verdict in a sentence."""
    cuts = len(report.cut_points)
    if report.position_changes == 0:
        return (
            f"No position change in {report.candles} candles: no trade, so no cut point to check."
        )
    if not report.findings:
        return (
            f"No look-ahead found: at {cuts} cut points of {report.position_changes} position "
            "changes, no signal or indicator changed when the later candles were cut off."
        )
    first = report.findings[0]
    return (
        f"Repainting: {', '.join(report.changed())} changed when the later candles were cut "
        f"off, first at candle {first.bar} ({first.name}, cut at candle {first.cut}); "
        f"{len(report.findings)} findings at {len({f.cut for f in report.findings})} of "
        f"{cuts} cut points."
    )


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None
