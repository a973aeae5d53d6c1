"""Candles from ticks: UTC-aligned timeframes, an incremental aggregator, roll-ups.

Everything here is pure (no clock, no I/O) and exact: prices and volumes stay `Decimal`.
A candle covers `[open_time, open_time + timeframe)`; boundaries are multiples of the
timeframe counted from the Unix epoch in UTC, so a 5m candle opens at :00, :05, ... and a
1d candle at midnight UTC. A period without ticks has no candle (no zero-volume filler).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from connectors.base import Candle

TIMEFRAMES: Mapping[str, timedelta] = MappingProxyType(
    {
        "1m": timedelta(minutes=1),
        "5m": timedelta(minutes=5),
        "15m": timedelta(minutes=15),
        "1h": timedelta(hours=1),
        "4h": timedelta(hours=4),
        "1d": timedelta(days=1),
    }
)
DEFAULT_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "1h", "1d")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = timedelta(0)


def timeframe_delta(timeframe: str) -> timedelta:
    """The length of `timeframe`; ValueError for one not in TIMEFRAMES."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}"
        ) from None


def to_utc(timestamp: datetime) -> datetime:
    """`timestamp` in UTC; a naive datetime is refused rather than guessed."""
    offset = timestamp.utcoffset()
    if offset is None:
        raise ValueError(f"naive datetime {timestamp.isoformat()}: a timezone is required")
    if offset == _ZERO and timestamp.tzinfo is UTC:
        return timestamp
    return timestamp.astimezone(UTC)


def align(timestamp: datetime, timeframe: str) -> datetime:
    """Open time of the `timeframe` candle that contains `timestamp` (floor to a UTC boundary)."""
    delta = timeframe_delta(timeframe)
    return _floor(to_utc(timestamp), delta)


def _floor(timestamp: datetime, delta: timedelta) -> datetime:
    # timedelta // timedelta is integer arithmetic on microseconds: exact at every boundary.
    return _EPOCH + ((timestamp - _EPOCH) // delta) * delta


class _Bar:
    """The candle being built: mutable, turned into a frozen Candle when read or closed."""

    __slots__ = ("close", "end_time", "high", "low", "open", "open_time", "trades", "volume")

    def __init__(
        self, open_time: datetime, end_time: datetime, price: Decimal, volume: Decimal, trades: int
    ) -> None:
        self.open_time = open_time
        self.end_time = end_time
        self.open = price
        self.high = price
        self.low = price
        self.close = price
        self.volume = volume
        self.trades = trades

    def candle(self, symbol: str, timeframe: str) -> Candle:
        return Candle(
            symbol=symbol,
            timeframe=timeframe,
            open_time=self.open_time,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            trades=self.trades,
        )


class _Series:
    __slots__ = ("bar", "closed", "delta", "dropped", "symbol", "timeframe")

    def __init__(self, symbol: str, timeframe: str, max_closed: int | None) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.delta = timeframe_delta(timeframe)
        self.bar: _Bar | None = None
        self.closed: deque[Candle] = deque(maxlen=max_closed)
        self.dropped = 0


class CandleAggregator:
    """Builds candles of several timeframes from a stream of ticks, per symbol.

    Ticks of one symbol must arrive in time order at least across candle boundaries: a
    tick older than the open candle raises ValueError (its candle is already published).
    `max_closed` bounds the closed candles kept per symbol and timeframe (oldest dropped).
    """

    def __init__(
        self,
        timeframes: Iterable[str] = DEFAULT_TIMEFRAMES,
        *,
        max_closed: int | None = 10_000,
    ) -> None:
        self.timeframes = tuple(timeframes)
        for timeframe in self.timeframes:
            timeframe_delta(timeframe)
        if not self.timeframes:
            raise ValueError("at least one timeframe is required")
        if max_closed is not None and max_closed < 0:
            raise ValueError("max_closed must be >= 0")
        self._max_closed = max_closed
        self._series: dict[str, tuple[_Series, ...]] = {}

    def add(
        self,
        symbol: str,
        price: Decimal,
        volume: Decimal,
        timestamp: datetime,
        *,
        trades: int = 1,
    ) -> list[Candle]:
        """Feed one tick; returns the candles it closed (oldest timeframe first), often none."""
        if volume < 0:
            raise ValueError(f"negative volume {volume}")
        if trades < 0:
            raise ValueError(f"negative trade count {trades}")
        timestamp = to_utc(timestamp)
        series = self._series.get(symbol)
        if series is None:
            series = tuple(_Series(symbol, tf, self._max_closed) for tf in self.timeframes)
            self._series[symbol] = series
        closed: list[Candle] = []
        for s in series:
            bar = s.bar
            if bar is not None and timestamp < bar.end_time:
                if timestamp < bar.open_time:
                    raise ValueError(
                        f"{symbol} tick at {timestamp.isoformat()} is older than the open "
                        f"{s.timeframe} candle ({bar.open_time.isoformat()})"
                    )
                if price > bar.high:
                    bar.high = price
                elif price < bar.low:
                    bar.low = price
                bar.close = price
                bar.volume += volume
                bar.trades += trades
                continue
            if bar is not None:
                candle = bar.candle(symbol, s.timeframe)
                if len(s.closed) == s.closed.maxlen:
                    s.dropped += 1
                s.closed.append(candle)
                closed.append(candle)
            open_time = _floor(timestamp, s.delta)
            s.bar = _Bar(open_time, open_time + s.delta, price, volume, trades)
        return closed

    def current(self, symbol: str, timeframe: str) -> Candle | None:
        """The open (not yet closed) candle, or None before the symbol's first tick."""
        bar = self._get(symbol, timeframe).bar
        return None if bar is None else bar.candle(symbol, timeframe)

    def closed(self, symbol: str, timeframe: str) -> list[Candle]:
        """Closed candles kept for the symbol, oldest first."""
        return list(self._get(symbol, timeframe).closed)

    def candles(self, symbol: str, timeframe: str) -> list[Candle]:
        """Closed candles then the open one, oldest first."""
        series = self._get(symbol, timeframe)
        result = list(series.closed)
        if series.bar is not None:
            result.append(series.bar.candle(symbol, timeframe))
        return result

    def dropped(self, symbol: str, timeframe: str) -> int:
        """How many closed candles `max_closed` has discarded for the symbol."""
        return self._get(symbol, timeframe).dropped

    def _get(self, symbol: str, timeframe: str) -> _Series:
        if timeframe not in self.timeframes:
            timeframe_delta(timeframe)  # unknown timeframe: the more useful message
            raise ValueError(f"timeframe {timeframe!r} is not aggregated here")
        for s in self._series.get(symbol, ()):
            if s.timeframe == timeframe:
                return s
        return _Series(symbol, timeframe, 0)


def aggregate(candles: Iterable[Candle], timeframe: str) -> list[Candle]:
    """Roll lower-timeframe candles (one symbol, oldest first) up into `timeframe` candles.

    The source timeframe must divide the target one. The result equals what the
    aggregator would have built from the same ticks.
    """
    target = timeframe_delta(timeframe)
    result: list[Candle] = []
    bar: _Bar | None = None
    symbol = ""
    source = ""
    previous: datetime | None = None
    for candle in candles:
        if bar is None and not result:
            symbol, source = candle.symbol, candle.timeframe
            step = timeframe_delta(source)
            if step > target or target % step:
                raise ValueError(f"cannot roll {source} candles up into {timeframe}")
        elif candle.symbol != symbol or candle.timeframe != source:
            raise ValueError("candles of one symbol and one timeframe are required")
        open_time = to_utc(candle.open_time)
        if previous is not None and open_time <= previous:
            raise ValueError("candles must be strictly in time order")
        previous = open_time
        if bar is not None and open_time < bar.end_time:
            bar.high = max(bar.high, candle.high)
            bar.low = min(bar.low, candle.low)
            bar.close = candle.close
            bar.volume += candle.volume
            bar.trades += candle.trades
            continue
        if bar is not None:
            result.append(bar.candle(symbol, timeframe))
        start = _floor(open_time, target)
        bar = _Bar(start, start + target, candle.open, candle.volume, candle.trades)
        bar.high, bar.low, bar.close = candle.high, candle.low, candle.close
    if bar is not None:
        result.append(bar.candle(symbol, timeframe))
    return result
