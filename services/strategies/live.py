"""Live signals: each active strategy's reading of every closed candle of its symbols.

The market hands each step's closed candles to `SignalService.on_closed` (a candle
listener: it only queues them). A supervised worker takes them in order and, for each
closed candle of a symbol and timeframe that active strategies watch (`strategies.symbols`
and `.timeframe`), computes each strategy's signals (services/backtests/signals.py, the
code backtests run) over the candles that closed up to and including it, and keeps the
last candle's:

- `action`: buy when the strategy's wanted position goes from flat to long on that
  close, sell when it goes from long to flat, hold when it stays;
- `strength` (0-100), `confidence` (0-1) and `price` (the close), and in `metadata` the
  wanted position, the strategy's type and its indicators at that candle.

One transaction writes a step's signals (one per strategy, symbol, timeframe and candle:
a candle read twice, after a restart say, overwrites its row); then each is published as
a `strategy_signal` event on the `signals` channel to its owner only.

**History.** A signal is computed on the latest `history_candles(params)` closed candles:
at least HISTORY_CANDLES, and enough for the strategy's windows to fill several times
over. Averages over windows are exact on that history; the recursions (EMA, Wilder's
RSI) have forgotten the rest to float noise; a strategy that holds its view until an
exit (mean reversion, RSI, breakout) sees its history from that window's start, like a
backtest started there. So the live signal of a candle equals that backtest's signal of
the candle (the tests check it).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Any

import structlog

from connectors.base import Candle
from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask
from database.orm import Strategy
from database.orm.types import utcnow
from database.repositories import signals as signal_repo
from database.repositories import strategies as strategy_repo
from models.enums import SignalAction
from models.events import Channel, EventType
from models.signals import SignalRead
from models.strategy_params import (
    ArbitrageParams,
    BreakoutParams,
    MeanReversionParams,
    RocMomentumParams,
    RsiMomentumParams,
    StrategyParams,
    TrendFollowingParams,
    kind_of,
    parse_parameters,
)
from services.backtests.signals import Ohlcv, Signals, aligned, signals_for
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.market_data.history import TIMEFRAMES, CandleSource, closed_candles
from utils.candles import timeframe_delta

log = structlog.get_logger(__name__)

HISTORY_CANDLES = 1000
# Candles queued for the worker; past it the oldest step's are dropped (and counted).
QUEUE_STEPS = 10_000
_HUNDREDTH = Decimal("0.01")
_TEN_THOUSANDTH = Decimal("0.0001")


def history_candles(params: StrategyParams) -> int:
    """How many closed candles a live signal is computed on (module doc)."""
    if isinstance(params, TrendFollowingParams):
        needed = params.slow_window * (4 if params.average == "ema" else 1)
    elif isinstance(params, MeanReversionParams):
        needed = params.window
    elif isinstance(params, RsiMomentumParams):
        needed = params.window * 10
    elif isinstance(params, RocMomentumParams):
        needed = params.window + 1
    elif isinstance(params, BreakoutParams):
        needed = max(params.entry_window, params.exit_window) + 1
    elif isinstance(params, ArbitrageParams):
        needed = params.window
    else:  # pragma: no cover - the union is exhaustive
        raise TypeError(type(params).__name__)
    return max(HISTORY_CANDLES, 3 * needed)


@dataclass(frozen=True, slots=True)
class LiveStrategy:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    params: StrategyParams


def _action(position: int, previous: int) -> SignalAction:
    if position == previous:
        return SignalAction.HOLD
    return SignalAction.BUY if position == 1 else SignalAction.SELL


def _exact(value: float, quantum: Decimal, top: Decimal) -> Decimal:
    if not math.isfinite(value):
        return Decimal(0)
    return min(max(Decimal(repr(value)).quantize(quantum, ROUND_HALF_EVEN), Decimal(0)), top)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def reasoning_of(strategy: LiveStrategy, action: SignalAction, wanted: int) -> str:
    kind = kind_of(strategy.params).replace("_", " ")
    view = "long" if wanted == 1 else "flat"
    if action is SignalAction.HOLD:
        return f"{strategy.name} ({kind}) stays {view}"
    turn = "enters long" if action is SignalAction.BUY else "leaves its long for flat"
    return f"{strategy.name} ({kind}) {turn} on this close"


def signal_row(
    strategy: LiveStrategy, candle: Candle, signals: Signals, created_at: datetime
) -> dict[str, Any]:
    """The `trading_signals` row of the last candle of `signals` (computed on the
    candles that closed up to `candle`, which is the last)."""
    last = len(signals) - 1
    wanted = int(signals.position[last])
    previous = int(signals.position[last - 1]) if last > 0 else 0
    action = _action(wanted, previous)
    indicators = {
        name: _finite(float(values[last])) for name, values in sorted(signals.indicators.items())
    }
    return {
        "id": uuid.uuid4(),
        "user_id": strategy.user_id,
        "strategy_id": strategy.id,
        "agent_id": None,
        "symbol": candle.symbol,
        "timeframe": candle.timeframe,
        "candle_open_time": candle.open_time,
        "action": action.value,
        "strength": _exact(float(signals.strength[last]), _HUNDREDTH, Decimal(100)),
        "confidence": _exact(float(signals.confidence[last]), _TEN_THOUSANDTH, Decimal(1)),
        "price": candle.close,
        "reasoning": reasoning_of(strategy, action, wanted),
        "metadata": {
            "position": wanted,
            "strategy_type": kind_of(strategy.params),
            "indicators": indicators,
            "history_candles": len(signals),
        },
        "created_at": created_at,
    }


def ohlcv_of(candles: Sequence[Candle]) -> Ohlcv:
    return Ohlcv.of(
        [float(c.open) for c in candles],
        [float(c.high) for c in candles],
        [float(c.low) for c in candles],
        [float(c.close) for c in candles],
        [float(c.volume) for c in candles],
    )


class SignalService:
    """Computes, stores and publishes the live signals (module doc)."""

    def __init__(
        self, database: DatabaseService, market: CandleSource, event_bus: EventBus
    ) -> None:
        self._database = database
        self._market = market
        self._bus = event_bus
        self._queue: asyncio.Queue[Sequence[Candle]] = asyncio.Queue(maxsize=QUEUE_STEPS)
        self._loop = SupervisedTask("strategy_signals", self._work)
        self.computed = 0
        self.dropped = 0
        self.errors = 0

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy(
            "ok",
            computed=self.computed,
            queued=self._queue.qsize(),
            dropped=self.dropped,
            errors=self.errors,
        )

    def on_closed(self, candles: Sequence[Candle]) -> None:
        """The market's candle listener: queues the step's closed candles, never waits."""
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            log.warning("strategy_signals_behind", dropped_steps=self.dropped)
        self._queue.put_nowait(list(candles))

    async def settled(self) -> None:
        """Returns once every candle queued so far has been handled."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            candles = await self._queue.get()
            try:
                await self.compute(candles)
            except Exception:
                self.errors += 1
                log.exception("strategy_signals_failed", candles=len(candles))
            finally:
                self._queue.task_done()

    async def compute(self, candles: Sequence[Candle]) -> list[SignalRead]:
        """The signals of every active strategy watching these closed candles, stored
        and published; returns them."""
        wanted = {c.timeframe for c in candles if c.timeframe in TIMEFRAMES}
        if not wanted:
            return []
        async with self._database.database.read() as session:
            rows = await strategy_repo.watching(session, timeframes=sorted(wanted))
        watchers = _watchers(rows)
        if not watchers:
            return []
        created_at = utcnow()
        records: list[dict[str, Any]] = []
        for candle in candles:
            strategies = watchers.get((candle.symbol, candle.timeframe))
            if not strategies:
                continue
            count = max(history_candles(s.params) for s in strategies)
            history = await self._history(candle, count)
            if not history or history[-1].open_time != candle.open_time:
                log.warning(
                    "strategy_signal_without_candle",
                    symbol=candle.symbol,
                    timeframe=candle.timeframe,
                    open_time=candle.open_time.isoformat(),
                )
                continue
            for strategy in strategies:
                window = history[-history_candles(strategy.params) :]
                reference = None
                if isinstance(strategy.params, ArbitrageParams):
                    theirs = await self._history(
                        candle, len(window), symbol=strategy.params.reference_symbol
                    )
                    window, matched = aligned(window, theirs, key=lambda c: c.open_time)
                    if not window or window[-1].open_time != candle.open_time:
                        continue  # the reference has no candle at this one's time
                    reference = ohlcv_of(matched)
                signals = await asyncio.to_thread(
                    partial(signals_for, reference=reference), ohlcv_of(window), strategy.params
                )
                records.append(signal_row(strategy, candle, signals, created_at))
        if not records:
            return []
        async with self._database.database.transaction() as session:
            await signal_repo.upsert_signals(session, records)
        reads = [SignalRead.from_record(record) for record in records]
        self.computed += len(reads)
        for read, record in zip(reads, records, strict=True):
            await self._bus.publish(
                Channel.SIGNALS.value,
                EventType.STRATEGY_SIGNAL,
                read.model_dump(mode="json"),
                user_id=record["user_id"],
            )
        return reads

    async def _history(
        self, candle: Candle, count: int, *, symbol: str | None = None
    ) -> list[Candle]:
        """The `count` candles of the symbol (default: the candle's) closed up to and
        including `candle`'s time."""
        delta = timeframe_delta(candle.timeframe)
        start = candle.open_time - delta * (count - 1)
        return await closed_candles(
            self._market,
            symbol or candle.symbol,
            timeframe=candle.timeframe,
            start=start,
            until=candle.open_time + delta,
        )


def _watchers(rows: Sequence[Strategy]) -> dict[tuple[str, str], list[LiveStrategy]]:
    """(symbol, timeframe) → the active strategies watching it whose parameters run."""
    found: dict[tuple[str, str], list[LiveStrategy]] = defaultdict(list)
    for row in rows:
        try:
            params = parse_parameters(row.strategy_type, row.parameters)  # type: ignore[arg-type]
        except ValueError:  # a seed type without built-in signals, or stale parameters
            continue
        live = LiveStrategy(row.id, row.user_id, row.name, params)
        for symbol in row.symbols or ():
            found[(symbol, row.timeframe)].append(live)
    return found
