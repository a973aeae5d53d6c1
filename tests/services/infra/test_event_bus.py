"""The event bus, in-process and over Redis (two RedisService objects = two processes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.service_registry import HealthStatus
from models.events import Event, EventType, InvalidChannelError
from services.infra.event_bus import (
    EventBus,
    InProcessEventBus,
    RedisEventBus,
    ReplayUnavailableError,
)
from services.infra.redis import RedisService
from tests.services.infra.test_redis import (
    WAIT,
    ThrowawayRedis,
    delete_namespace,
    make_service,
    state_changes,
)


def collect(bus: EventBus) -> asyncio.Queue[Event]:
    events: asyncio.Queue[Event] = asyncio.Queue()
    bus.subscribe(events.put_nowait)
    return events


async def next_event(events: asyncio.Queue[Event]) -> Event:
    return await asyncio.wait_for(events.get(), WAIT)


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus(history=5)
    await bus.start()
    yield bus
    await bus.stop()


class TestInProcessPublish:
    async def test_seq_counts_per_channel(self, bus: InProcessEventBus) -> None:
        assert await bus.publish("trades", EventType.TRADE_EXECUTION, {"n": 1}) == 1
        assert await bus.publish("trades", EventType.TRADE_EXECUTION, {"n": 2}) == 2
        assert await bus.publish("risk", EventType.RISK_ALERT, {"n": 1}) == 1

    async def test_handler_gets_the_envelope_serialized_once(self, bus: InProcessEventBus) -> None:
        events = collect(bus)
        user = uuid.uuid4()
        at = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
        await bus.publish(
            "portfolio",
            EventType.PORTFOLIO_UPDATE,
            {"equity": Decimal("1000.10"), "tiny": Decimal("1E-7"), "at": at},
            user_id=user,
        )
        event = await next_event(events)
        assert (event.channel, event.seq, event.type, event.user_id) == (
            "portfolio",
            1,
            "portfolio_update",
            user,
        )
        envelope = event.envelope()
        assert list(envelope) == ["type", "timestamp", "channel", "seq", "data"]
        assert envelope["data"] == {
            "equity": "1000.10",
            "tiny": "0.0000001",
            "at": "2024-05-01T12:00:00Z",
        }
        assert datetime.fromisoformat(envelope["timestamp"]).tzinfo == UTC
        assert event.text == event.payload.decode()

    async def test_market_symbol_is_upper_cased(self, bus: InProcessEventBus) -> None:
        events = collect(bus)
        await bus.publish("market:btc/usdt", EventType.MARKET_DATA, {})
        assert (await next_event(events)).channel == "market:BTC/USDT"

    @pytest.mark.parametrize("channel", ["orders", "market:", "market:BTC*", "agent:a b", ""])
    async def test_unknown_channel_is_refused(self, bus: InProcessEventBus, channel: str) -> None:
        with pytest.raises(InvalidChannelError):
            await bus.publish(channel, EventType.MARKET_DATA, {})

    async def test_malformed_event_type_is_refused(self, bus: InProcessEventBus) -> None:
        with pytest.raises(ValueError, match="snake_case"):
            await bus.publish("trades", "Trade Execution", {})


class TestInProcessSubscribe:
    async def test_unsubscribed_handler_gets_nothing_more(self, bus: InProcessEventBus) -> None:
        seen: list[int] = []
        unsubscribe = bus.subscribe(lambda e: seen.append(e.seq))
        await bus.publish("trades", EventType.TRADE_EXECUTION, {})
        unsubscribe()
        await bus.publish("trades", EventType.TRADE_EXECUTION, {})
        assert seen == [1]

    async def test_raising_handler_does_not_stop_the_others(self, bus: InProcessEventBus) -> None:
        def broken(event: Event) -> None:
            raise RuntimeError("handler bug")

        bus.subscribe(broken)
        events = collect(bus)
        await bus.publish("trades", EventType.TRADE_EXECUTION, {})
        await bus.publish("trades", EventType.TRADE_EXECUTION, {})
        assert [(await next_event(events)).seq for _ in range(2)] == [1, 2]
        assert bus.handler_errors == 2
        assert (await bus.health()).data["handler_errors"] == 2


class TestListening:
    async def test_nobody_subscribed_is_nobody_listening(self, bus: InProcessEventBus) -> None:
        assert not bus.listening("trades")

    async def test_a_handler_without_wants_hears_every_channel(
        self, bus: InProcessEventBus
    ) -> None:
        unsubscribe = bus.subscribe(lambda _event: None)
        assert bus.listening("trades")
        assert bus.listening(f"agent:{uuid.uuid4()}")
        unsubscribe()
        assert not bus.listening("trades")

    async def test_wants_says_which_channels_are_heard(self, bus: InProcessEventBus) -> None:
        heard = {"risk"}
        unsubscribe = bus.subscribe(lambda _event: None, wants=heard.__contains__)
        assert bus.listening("risk")
        assert not bus.listening("trades")
        heard.add("trades")
        assert bus.listening("trades")
        unsubscribe()
        assert not bus.listening("risk")


class TestInProcessReplay:
    async def test_returns_events_after_seq_up_to_limit(self, bus: InProcessEventBus) -> None:
        for n in range(4):
            await bus.publish("trades", EventType.TRADE_EXECUTION, {"n": n})
        assert [e.seq for e in await bus.replay("trades", 1, 10)] == [2, 3, 4]
        assert [e.seq for e in await bus.replay("trades", 1, 2)] == [2, 3]
        assert await bus.replay("trades", 4, 10) == []

    async def test_history_is_bounded(self, bus: InProcessEventBus) -> None:
        for n in range(8):
            await bus.publish("risk", EventType.RISK_ALERT, {"n": n})
        assert [e.seq for e in await bus.replay("risk", 0, 100)] == [4, 5, 6, 7, 8]

    async def test_non_durable_channel_has_no_replay(self, bus: InProcessEventBus) -> None:
        await bus.publish("market:ETH-USD", EventType.MARKET_DATA, {})
        with pytest.raises(ValueError, match="no history"):
            await bus.replay("market:ETH-USD", 0, 10)


PairFactory = Callable[..., Awaitable[tuple[RedisEventBus, RedisEventBus]]]


@pytest.fixture
async def redis_pair(redis_url: str, redis_namespace: str) -> AsyncIterator[PairFactory]:
    """Two buses on two RedisService objects sharing one namespace: two processes' worth."""
    started: list[tuple[RedisService, RedisEventBus]] = []

    async def build(history: int = 100) -> tuple[RedisEventBus, RedisEventBus]:
        buses = []
        for _ in range(2):
            redis = make_service(redis_url, redis_namespace)
            await redis.start()
            bus = RedisEventBus(redis, history=history)
            await bus.start()
            started.append((redis, bus))
            buses.append(bus)
        return buses[0], buses[1]

    yield build
    for redis, bus in reversed(started):
        await bus.stop()
        await redis.stop()
    await delete_namespace(redis_url, redis_namespace)


class TestRedisBus:
    async def test_event_reaches_another_instance_with_a_shared_seq(
        self, redis_pair: PairFactory
    ) -> None:
        one, two = await redis_pair()
        assert one.subscribed
        assert two.subscribed
        at_one, at_two = collect(one), collect(two)
        user = uuid.uuid4()

        assert await one.publish("trades", EventType.TRADE_EXECUTION, {"p": Decimal("2.5")}) == 1
        assert await two.publish("trades", EventType.TRADE_EXECUTION, {"p": "3"}, user_id=user) == 2

        for events in (at_one, at_two):
            first, second = await next_event(events), await next_event(events)
            assert (first.seq, second.seq) == (1, 2)
            assert first.envelope()["data"] == {"p": "2.5"}
            assert (first.user_id, second.user_id) == (None, user)
            assert second.envelope()["seq"] == 2

    async def test_every_channel_counts_as_heard(self, redis_pair: PairFactory) -> None:
        # Another instance's clients may listen: this one cannot tell, so it assumes so.
        one, _ = await redis_pair()
        assert one.listening(f"agent:{uuid.uuid4()}")

    async def test_replay_reads_what_another_instance_stored(self, redis_pair: PairFactory) -> None:
        one, two = await redis_pair(history=3)
        user = uuid.uuid4()
        for n in range(5):
            await one.publish("notifications", EventType.AGENT_STATUS, {"n": n}, user_id=user)
        replayed = await two.replay("notifications", 0, 100)
        assert [e.seq for e in replayed] == [3, 4, 5]
        assert [e.envelope()["data"]["n"] for e in replayed] == [2, 3, 4]
        assert {e.user_id for e in replayed} == {user}
        assert [e.seq for e in await two.replay("notifications", 3, 1)] == [4]

    async def test_non_durable_channel_is_not_stored(self, redis_pair: PairFactory) -> None:
        one, two = await redis_pair()
        await one.publish("agent:7", EventType.AGENT_DECISION, {})
        with pytest.raises(ValueError, match="no history"):
            await two.replay("agent:7", 0, 10)

    async def test_raising_handler_does_not_stop_delivery(self, redis_pair: PairFactory) -> None:
        one, two = await redis_pair()

        def broken(event: Event) -> None:
            raise RuntimeError("handler bug")

        two.subscribe(broken)
        events = collect(two)
        await one.publish("risk", EventType.RISK_ALERT, {})
        await one.publish("risk", EventType.RISK_ALERT, {})
        assert [(await next_event(events)).seq for _ in range(2)] == [1, 2]
        assert two.handler_errors == 2
        assert (await two.health()).status is HealthStatus.HEALTHY


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    await server.start()
    yield server
    await server.kill()


class TestRedisBusOutage:
    async def test_falls_back_while_down_and_resumes_after(
        self, throwaway_redis: ThrowawayRedis, redis_namespace: str
    ) -> None:
        redis_one = make_service(throwaway_redis.url, redis_namespace)
        redis_two = make_service(throwaway_redis.url, redis_namespace)
        one, two = RedisEventBus(redis_one), RedisEventBus(redis_two)
        for service in (redis_one, redis_two, one, two):
            await service.start()
        try:
            changes_one, changes_two = state_changes(redis_one), state_changes(redis_two)
            at_one, at_two = collect(one), collect(two)
            assert await one.publish("trades", EventType.TRADE_EXECUTION, {"n": 1}) == 1
            assert (await next_event(at_two)).seq == 1
            assert (await next_event(at_one)).seq == 1

            await throwaway_redis.kill()
            assert await asyncio.wait_for(changes_one.get(), WAIT) is False
            assert await asyncio.wait_for(changes_two.get(), WAIT) is False

            # Down: still delivered here, numbered after the last seq this process saw.
            assert await one.publish("trades", EventType.TRADE_EXECUTION, {"n": 2}) == 2
            local = await next_event(at_one)
            assert (local.seq, local.envelope()["data"]) == (2, {"n": 2})
            health = await one.health()
            assert health.status is HealthStatus.DEGRADED
            assert health.data["fallback_publishes"] == 1
            assert one.subscribed is False

            # Back (empty: no persistence): the subscribers resume and the shared counter
            # continues past the seq handed out locally, so clients see no repeat.
            await throwaway_redis.start()
            assert await asyncio.wait_for(changes_one.get(), WAIT) is True
            assert await asyncio.wait_for(changes_two.get(), WAIT) is True
            assert await one.wait_subscribed(within=WAIT)
            assert await two.wait_subscribed(within=WAIT)
            assert (await one.health()).status is HealthStatus.HEALTHY

            assert await one.publish("trades", EventType.TRADE_EXECUTION, {"n": 3}) == 3
            resumed = await next_event(at_two)
            assert (resumed.seq, resumed.envelope()["data"]) == (3, {"n": 3})
            assert at_two.empty()
        finally:
            for service in (two, one, redis_two, redis_one):
                await service.stop()

    async def test_redis_down_at_start_is_joined_once_it_is_up(self, redis_namespace: str) -> None:
        server = ThrowawayRedis()  # its port stays free until start()
        redis = make_service(server.url, redis_namespace)
        bus = RedisEventBus(redis)
        await redis.start()
        await bus.start()
        try:
            changes, events = state_changes(redis), collect(bus)
            assert (await bus.health()).status is HealthStatus.DEGRADED
            assert await bus.publish("risk", EventType.RISK_ALERT, {}) == 1
            assert (await next_event(events)).seq == 1

            await server.start()
            assert await asyncio.wait_for(changes.get(), WAIT) is True
            assert await bus.wait_subscribed(within=WAIT)
            assert await bus.publish("risk", EventType.RISK_ALERT, {}) == 2
            assert [e.seq for e in await bus.replay("risk", 0, 10)] == [2]
        finally:
            await bus.stop()
            await redis.stop()
            await server.kill()

    async def test_replay_while_down_says_so(
        self, throwaway_redis: ThrowawayRedis, redis_namespace: str
    ) -> None:
        redis = make_service(throwaway_redis.url, redis_namespace)
        bus = RedisEventBus(redis)
        await redis.start()
        await bus.start()
        try:
            changes = state_changes(redis)
            await throwaway_redis.kill()
            assert await asyncio.wait_for(changes.get(), WAIT) is False
            with pytest.raises(ReplayUnavailableError, match="redis unavailable"):
                await bus.replay("trades", 0, 10)
        finally:
            await bus.stop()
            await redis.stop()
