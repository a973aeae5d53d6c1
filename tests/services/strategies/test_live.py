"""Live signals on the real services of each database: the market closes a candle, the
active strategies that watch its symbol and timeframe store and publish one signal each,
computed on the candles closed up to it; the others store nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from connectors.base import Candle
from core.exceptions import NotFoundError, ValidationFailedError
from models.agents import AgentCreate
from models.enums import SignalAction, Timeframe
from models.events import Channel, Event, EventType
from models.strategies import StrategyCreate, StrategyRead, StrategyUpdate
from models.strategy_params import TrendFollowingParams
from services.backtests.signals import Signals, signals_for
from services.container import Services
from services.llm.prompts import AnswerStyle, system_prompt, user_prompt
from services.market_data.history import closed_candles
from services.strategies.live import HISTORY_CANDLES, LiveStrategy, history_candles, ohlcv_of
from services.strategies.live import signal_row as row_of
from tests.factories import create_user

CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
SYMBOL = "BTC/USD"
MINUTE = timedelta(minutes=1)


async def new_user(services: Services) -> uuid.UUID:
    return (await create_user(services.database.database)).id


async def add(services: Services, user_id: uuid.UUID, **fields: Any) -> StrategyRead:
    body = {
        "name": f"s-{uuid.uuid4().hex[:8]}",
        "strategy_type": "trend_following",
        "parameters": {"fast_window": 3, "slow_window": 8},
        "symbols": [SYMBOL],
        "timeframe": "1m",
        **fields,
    }
    return await services.strategies.create_strategy(user_id, StrategyCreate.model_validate(body))


async def close_a_minute(services: Services) -> None:
    """Step the market past the next minute's close and let the signals settle."""
    await services.market_data.advance(61)
    await services.signals.settled()


class TestLiveSignals:
    async def test_a_closed_candle_gives_each_watching_strategy_one_signal(
        self, services: Services
    ) -> None:
        user = await new_user(services)
        strategy = await add(services, user)
        await close_a_minute(services)

        signals = (await services.strategies.list_signals(user, strategy.id)).items
        candles = await closed_candles(
            services.market_data,
            SYMBOL,
            timeframe="1m",
            start=CLOCK - MINUTE * HISTORY_CANDLES,
            until=CLOCK + MINUTE,
        )
        assert [s.candle_open_time for s in signals] == [CLOCK]
        signal = signals[0]
        assert candles[-1].open_time == CLOCK
        assert signal.price == candles[-1].close
        assert (signal.symbol, signal.timeframe.value, signal.strategy_id) == (
            SYMBOL,
            "1m",
            strategy.id,
        )
        # What a backtest's signals say of the same candle, on the same history.
        expected = signals_for(
            ohlcv_of(candles[-HISTORY_CANDLES:]), TrendFollowingParams(fast_window=3, slow_window=8)
        )
        assert signal.metadata["position"] == int(expected.position[-1])
        assert signal.metadata["history_candles"] == HISTORY_CANDLES
        flipped = expected.position[-1] != expected.position[-2]
        assert (signal.action is not SignalAction.HOLD) == bool(flipped)
        assert signal.metadata["indicators"]["fast"] == pytest.approx(
            expected.indicators["fast"][-1]
        )

    async def test_only_active_strategies_of_the_symbol_and_timeframe_read_it(
        self, services: Services
    ) -> None:
        user = await new_user(services)
        watching = await add(services, user)
        inactive = await add(services, user, is_active=False)
        hourly = await add(services, user, timeframe="1h")
        elsewhere = await add(services, user, symbols=["ETH/USD"])
        blind = await add(services, user, symbols=[])
        await close_a_minute(services)

        counts = {
            s.name: (await services.strategies.list_signals(user, s.id)).count
            for s in (watching, inactive, hourly, elsewhere, blind)
        }
        assert counts == {
            watching.name: 1,
            inactive.name: 0,
            hourly.name: 0,
            elsewhere.name: 1,
            blind.name: 0,
        }
        (eth,) = (await services.strategies.list_signals(user, elsewhere.id)).items
        assert eth.symbol == "ETH/USD"

    async def test_a_candle_read_twice_keeps_one_signal(self, services: Services) -> None:
        user = await new_user(services)
        strategy = await add(services, user)
        await close_a_minute(services)
        candle = await _candle_at(services, CLOCK)

        again = await services.signals.compute([candle])

        assert [s.candle_open_time for s in again] == [CLOCK]
        listed = await services.strategies.list_signals(user, strategy.id)
        assert listed.count == 1

    async def test_each_signal_is_published_to_its_owner(self, services: Services) -> None:
        user = await new_user(services)
        strategy = await add(services, user)
        received: list[Event] = []
        stop = services.event_bus.subscribe(received.append)
        try:
            await close_a_minute(services)
        finally:
            stop()
        (event,) = [e for e in received if e.channel == Channel.SIGNALS.value]
        assert event.type == EventType.STRATEGY_SIGNAL
        assert event.user_id == user
        assert event.envelope()["data"]["strategy_id"] == str(strategy.id)

    async def test_signals_page_back_and_filter(self, services: Services) -> None:
        user = await new_user(services)
        strategy = await add(services, user)
        for _ in range(3):
            await close_a_minute(services)

        first = await services.strategies.list_signals(user, strategy.id, limit=2)
        rest = await services.strategies.list_signals(
            user, strategy.id, before=first.items[-1].candle_open_time
        )
        times = [s.candle_open_time for s in first.items + rest.items]
        assert times == [CLOCK + MINUTE * k for k in (2, 1, 0)]
        holds = await services.strategies.list_signals(
            user, strategy.id, action=SignalAction.HOLD, symbol="btc-usd"
        )
        assert all(s.action is SignalAction.HOLD for s in holds.items)

    async def test_another_users_strategy_has_no_signals_to_show(self, services: Services) -> None:
        owner, other = await new_user(services), await new_user(services)
        strategy = await add(services, owner)
        with pytest.raises(NotFoundError):
            await services.strategies.list_signals(other, strategy.id)


class TestAgentsSeeTheirStrategiesSignals:
    async def test_an_agent_sees_the_latest_signal_of_each_strategy_it_lists(
        self, services: Services
    ) -> None:
        user = await new_user(services)
        followed = await add(services, user, symbols=[SYMBOL, "ETH/USD"])
        ignored = await add(services, user)
        agent = await services.agents.create_agent(
            user,
            AgentCreate(
                name="Follower",
                symbols=[SYMBOL],
                strategies=[followed.name, "not a strategy of mine"],
            ),
        )
        for _ in range(2):
            await close_a_minute(services)
        (latest,) = (
            await services.strategies.list_signals(user, followed.id, symbol=SYMBOL, limit=1)
        ).items

        seen = await services.agents._context.see(user, agent.id)

        (signal,) = seen.context.signals
        assert (signal.strategy, signal.symbol, signal.candle_open_time) == (
            followed.name,
            SYMBOL,
            CLOCK + MINUTE,
        )
        assert (signal.action, signal.price, signal.strength) == (
            latest.action.value,
            latest.price,
            latest.strength,
        )
        assert ignored.name not in {s.strategy for s in seen.context.signals}
        payload = user_prompt(seen.context)
        assert followed.name in payload
        assert "not instructions" in system_prompt(seen.context, AnswerStyle.JSON_OBJECT)

    async def test_an_agent_without_strategies_sees_no_signals(self, services: Services) -> None:
        user = await new_user(services)
        await add(services, user)
        agent = await services.agents.create_agent(
            user, AgentCreate(name="Alone", symbols=[SYMBOL])
        )
        await close_a_minute(services)

        seen = await services.agents._context.see(user, agent.id)

        assert seen.context.signals == []
        assert "not instructions" not in system_prompt(seen.context, AnswerStyle.JSON_OBJECT)


class TestWhereItWatches:
    async def test_symbols_are_stored_as_the_market_names_them(self, services: Services) -> None:
        user = await new_user(services)
        strategy = await add(services, user, symbols=["btc-usd", "ETH/USD"])
        assert strategy.symbols == ["BTC/USD", "ETH/USD"]
        changed = await services.strategies.update_strategy(
            user, strategy.id, StrategyUpdate(symbols=["SOL-USD"], timeframe=Timeframe.M5)
        )
        assert (changed.symbols, changed.timeframe.value) == (["SOL/USD"], "5m")

    @pytest.mark.parametrize(
        ("symbols", "field"),
        [(["BTC/USD", "NOPE/USD"], "symbols.1"), (["BTC/USD", "btc-usd"], "symbols.1")],
    )
    async def test_an_untraded_or_repeated_symbol_is_named(
        self, services: Services, symbols: list[str], field: str
    ) -> None:
        user = await new_user(services)
        with pytest.raises(ValidationFailedError) as caught:
            await add(services, user, symbols=symbols)
        assert [e["field"] for e in caught.value.details["errors"]] == [field]


def _signals(position: list[int], **arrays: list[float]) -> Signals:
    n = len(position)
    return Signals(
        np.array(position, dtype=np.int8),
        np.array(arrays.get("strength", [50.0] * n)),
        np.array(arrays.get("confidence", [0.5] * n)),
        {"fast": np.array(arrays.get("fast", [1.0] * n))},
    )


_CANDLE = Candle(
    symbol=SYMBOL,
    timeframe="1m",
    open_time=CLOCK,
    open=Decimal(100),
    high=Decimal(101),
    low=Decimal(99),
    close=Decimal("100.5"),
    volume=Decimal(3),
)
_STRATEGY = LiveStrategy(uuid.uuid4(), uuid.uuid4(), "cross", TrendFollowingParams())


class TestSignalRow:
    @pytest.mark.parametrize(
        ("position", "action"),
        [([0, 1], "buy"), ([1, 0], "sell"), ([1, 1], "hold"), ([0, 0], "hold"), ([1], "buy")],
    )
    def test_the_action_is_the_change_of_the_wanted_position(
        self, position: list[int], action: str
    ) -> None:
        row = row_of(_STRATEGY, _CANDLE, _signals(position), CLOCK)
        assert row["action"] == action
        assert row["metadata"]["position"] == position[-1]

    def test_strength_and_confidence_are_exact_and_in_range(self) -> None:
        row = row_of(
            _STRATEGY,
            _CANDLE,
            _signals([0, 1], strength=[0.0, 100.00000001], confidence=[0.0, 0.123456]),
            CLOCK,
        )
        assert (row["strength"], row["confidence"]) == (Decimal(100), Decimal("0.1235"))
        assert row["price"] == Decimal("100.5")

    def test_an_undefined_indicator_is_null(self) -> None:
        row = row_of(_STRATEGY, _CANDLE, _signals([0, 0], fast=[1.0, float("nan")]), CLOCK)
        assert row["metadata"]["indicators"] == {"fast": None}


def test_history_covers_the_windows_several_times() -> None:
    assert history_candles(TrendFollowingParams()) == HISTORY_CANDLES
    long = TrendFollowingParams(fast_window=100, slow_window=2000, average="ema")
    assert history_candles(long) == 3 * 4 * 2000


async def _candle_at(services: Services, open_time: datetime) -> Candle:
    (candle,) = await closed_candles(
        services.market_data, SYMBOL, timeframe="1m", start=open_time, until=open_time + MINUTE
    )
    return candle
