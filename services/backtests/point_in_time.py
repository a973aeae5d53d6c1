"""The market as it stood at a moment of the past: the one door an agent backtest's
decisions read the market through.

`GatedMarket` holds each symbol's closed candles of the whole run, read once. At a
simulated decision time `t` it shows only candles closed by `t` (open time + the
timeframe <= t) and a ticker derived from the last of them (bid = ask = last = its
close, stamped with its close time), never a live ticker nor a candle still open. A
candle stored with a later open time, whatever its price, is not there to see.

Fills look the other way, once a decision is made: `fill_candle(symbol, t, before)` is
the first candle opening at or after `t` and before the next decision, which is what
the order trades on (the engine's next-open rule).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from connectors.base import Candle
from models.decisions import CandleData, SymbolContext, TickerData
from services.agents.context import symbol_context
from utils.candles import timeframe_delta


@dataclass(frozen=True, slots=True)
class _Series:
    candles: tuple[Candle, ...]
    # The same candles as the context shows them, built once: a thousand decisions
    # share them (read only: symbol_context copies one before marking it).
    seen: tuple[CandleData, ...]
    opens: tuple[datetime, ...]
    # Close times, in the same order: close_time[i] = opens[i] + the timeframe.
    closes: tuple[datetime, ...]


class GatedMarket:
    def __init__(
        self, candles: Mapping[str, Sequence[Candle]], *, timeframe: str, limit: int
    ) -> None:
        """`candles`: each symbol's closed candles, oldest first; `limit`: how many of
        the latest a decision sees (AGENT_CANDLE_LIMIT)."""
        self.timeframe = timeframe
        self._delta: timedelta = timeframe_delta(timeframe)
        self._limit = limit
        self._series: dict[str, _Series] = {}
        for symbol, rows in candles.items():
            ordered = tuple(sorted(rows, key=lambda c: c.open_time))
            self._series[symbol] = _Series(
                candles=ordered,
                seen=tuple(CandleData.model_validate(c) for c in ordered),
                opens=tuple(c.open_time for c in ordered),
                closes=tuple(c.open_time + self._delta for c in ordered),
            )

    @property
    def symbols(self) -> list[str]:
        return list(self._series)

    def _closed_count(self, symbol: str, at: datetime) -> int:
        """How many of the symbol's candles have closed by `at`."""
        return bisect_right(self._series[symbol].closes, at)

    def closed(self, symbol: str, at: datetime) -> list[Candle]:
        """The latest `limit` candles closed by `at`, oldest first."""
        count = self._closed_count(symbol, at)
        return list(self._series[symbol].candles[max(0, count - self._limit) : count])

    def last_close(self, symbol: str, at: datetime) -> Decimal | None:
        """The close of the last candle closed by `at` (None before the first)."""
        count = self._closed_count(symbol, at)
        return self._series[symbol].candles[count - 1].close if count else None

    def ticker(self, symbol: str, at: datetime) -> TickerData | None:
        """The ticker a decision at `at` sees: the last closed candle's close."""
        series = self._series[symbol]
        count = self._closed_count(symbol, at)
        if not count:
            return None
        last = series.candles[count - 1]
        return TickerData(
            last=last.close,
            bid=last.close,
            ask=last.close,
            volume_24h=None,
            change_percent_24h=None,
            timestamp=series.closes[count - 1],
        )

    def context(self, symbol: str, at: datetime) -> SymbolContext:
        """The symbol's part of the agent's context at `at`, built as live contexts are
        (services/agents/context.py `symbol_context`), from closed candles only."""
        series = self._series[symbol]
        count = self._closed_count(symbol, at)
        ticker = self.ticker(symbol, at)
        seen = list(series.seen[max(0, count - self._limit) : count])
        if ticker is None:
            return SymbolContext(symbol=symbol, timeframe=self.timeframe, candles=[])
        return symbol_context(
            symbol, timeframe=self.timeframe, candles=seen, ticker=ticker, clock=at
        )

    def fill_candle(self, symbol: str, at: datetime, before: datetime | None) -> Candle | None:
        """The candle an order decided at `at` trades on: the first opening at or after
        `at`, if it opens before `before` (the next decision); else None."""
        series = self._series[symbol]
        index = bisect_left(series.opens, at)
        if index >= len(series.candles):
            return None
        candle = series.candles[index]
        if before is not None and candle.open_time >= before:
            return None
        return candle

    def candles_from(self, symbol: str, at: datetime, until: datetime) -> list[Candle]:
        """The candles opening in [at, until), oldest first."""
        series = self._series[symbol]
        return list(
            series.candles[bisect_left(series.opens, at) : bisect_left(series.opens, until)]
        )
