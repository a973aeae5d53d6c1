"""The rolling 24h window of a symbol's ticker: volume and opening price, per minute."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from connectors.base import Candle
from connectors.simulated.sampling import SECONDS_PER_DAY
from utils.candles import align

_ZERO = Decimal(0)
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)


class _Bucket:
    __slots__ = ("open", "open_time", "volume")

    def __init__(self, open_time: datetime, open_: Decimal, volume: Decimal) -> None:
        self.open_time = open_time
        self.open = open_
        self.volume = volume


class Rolling24h:
    """Volume and opening price over the last 24h, kept in 1-minute buckets."""

    __slots__ = ("_buckets", "_end", "volume")

    def __init__(self) -> None:
        self._buckets: deque[_Bucket] = deque()
        self._end: datetime | None = None
        self.volume = _ZERO

    @property
    def open_price(self) -> Decimal:
        return self._buckets[0].open

    def seed(self, candles: Sequence[Candle]) -> None:
        for candle in candles[-(SECONDS_PER_DAY // 60) :]:
            self._buckets.append(_Bucket(candle.open_time, candle.open, candle.volume))
            self.volume += candle.volume

    def add(self, price: Decimal, volume: Decimal, timestamp: datetime) -> None:
        if self._end is None or timestamp >= self._end:
            open_time = align(timestamp, "1m")
            self._end = open_time + _MINUTE
            self._buckets.append(_Bucket(open_time, price, volume))
            cutoff = timestamp - _DAY
            while len(self._buckets) > 1 and self._buckets[0].open_time <= cutoff:
                self.volume -= self._buckets.popleft().volume
        else:
            self._buckets[-1].volume += volume
        self.volume += volume
