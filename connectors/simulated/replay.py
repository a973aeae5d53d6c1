"""The replay of stored candles: each candle as four ticks, in time order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from connectors.base import Candle, ExchangeError
from connectors.simulated.market import Market
from connectors.simulated.sampling import to_ticks
from utils.candles import to_utc


class ReplayFinishedError(ExchangeError):
    """A replay has emitted every stored candle: there is nothing left to step."""


@dataclass(frozen=True, slots=True)
class PathPoint:
    market: Market
    mid: int
    volume: Decimal
    trades: int


class Replay:
    """Stored candles as four ticks each: open, low, high, close for a rising candle (open,
    high, low, close for a falling one), a quarter of the candle's length apart.

    The candle's volume and trade count are split over its four ticks (three equal parts
    rounded down to the step, the rest on the close), so re-aggregating the replayed ticks
    at the candles' timeframe gives back the candles exactly.
    """

    def __init__(self, series: Sequence[tuple[Market, Sequence[Candle]]], delta: timedelta) -> None:
        by_time: dict[datetime, list[tuple[Market, Candle]]] = {}
        for market, candles in series:
            for candle in candles:
                by_time.setdefault(to_utc(candle.open_time), []).append((market, candle))
        self._timeline = sorted(by_time.items(), key=lambda item: item[0])
        self._quarter = delta / 4
        self.position = 0

    @property
    def finished(self) -> bool:
        return self.position >= 4 * len(self._timeline)

    def next(self) -> tuple[datetime, list[PathPoint]]:
        index, phase = divmod(self.position, 4)
        self.position += 1
        open_time, entries = self._timeline[index]
        points = [self._point(market, candle, phase) for market, candle in entries]
        return open_time + self._quarter * phase, points

    @staticmethod
    def _point(market: Market, candle: Candle, phase: int) -> PathPoint:
        rising = candle.close >= candle.open
        price = (
            candle.open,
            candle.low if rising else candle.high,
            candle.high if rising else candle.low,
            candle.close,
        )[phase]
        part = (candle.volume / 4).quantize(market.step, rounding=ROUND_DOWN)
        volume = candle.volume - 3 * part if phase == 3 else part
        trades = candle.trades // 4
        if phase == 3:
            trades = candle.trades - 3 * trades
        return PathPoint(market, to_ticks(price, market.tick), volume, trades)


def check_replay_series(symbol: str, candles: Sequence[Candle]) -> None:
    if not candles:
        raise ValueError(f"no candles to replay for {symbol}")
    previous: datetime | None = None
    for candle in candles:
        if candle.symbol.upper() != symbol.upper():
            raise ValueError(f"a {candle.symbol} candle in the {symbol} series")
        open_time = to_utc(candle.open_time)
        if previous is not None and open_time <= previous:
            raise ValueError(f"{symbol} candles must be strictly in time order")
        previous = open_time
