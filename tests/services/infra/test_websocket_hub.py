"""WebSocketHub with the real in-process bus and in-memory sockets (the network edge).

`tests/api/test_websocket.py` covers the same behaviour through a real server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from core.service_registry import HealthStatus
from models.events import EventType
from services.infra.event_bus import InProcessEventBus
from services.infra.websocket_hub import (
    CLOSE_GOING_AWAY,
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_SLOW_CONSUMER,
    Connection,
    WebSocketHub,
)

WAIT = 10.0


class MemorySocket:
    """What the client would receive; `stalled` never finishes a send, like a client
    that stopped reading once the network buffers are full."""

    def __init__(self, *, stalled: bool = False) -> None:
        self.received: asyncio.Queue[str] = asyncio.Queue()
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._flowing = asyncio.Event()
        if not stalled:
            self._flowing.set()

    async def send_text(self, data: str) -> None:
        await self._flowing.wait()
        self.received.put_nowait(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.close_code = code
        self.closed.set()


class Client:
    """One connection served by the hub until `leave()`."""

    def __init__(
        self, hub: WebSocketHub, *, user_id: uuid.UUID | None = None, stalled: bool = False
    ) -> None:
        self.hub = hub
        self.user_id = user_id
        self.socket = MemorySocket(stalled=stalled)
        self._connected: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._gone = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def join(self) -> Client:
        self.task = asyncio.create_task(
            self.hub.serve(self.socket, self._read, user_id=self.user_id)
        )
        await asyncio.wait_for(asyncio.shield(self._connected), WAIT)
        return self

    async def _read(self, conn: Connection) -> None:
        self._connected.set_result(conn)
        await self._gone.wait()

    @property
    def conn(self) -> Connection:
        return self._connected.result()

    async def recv(self) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(
            await asyncio.wait_for(self.socket.received.get(), WAIT)
        )
        return message

    async def leave(self) -> None:
        self._gone.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, WAIT)


@pytest.fixture
def bus() -> InProcessEventBus:
    return InProcessEventBus()


async def started_hub(bus: InProcessEventBus, **options: Any) -> WebSocketHub:
    options = {"queue_size": 100, "heartbeat_seconds": 30, "heartbeat_timeout_seconds": 60} | (
        options
    )
    hub = WebSocketHub(bus, **options)
    await hub.start()
    return hub


@pytest.fixture
async def hub(bus: InProcessEventBus) -> AsyncIterator[WebSocketHub]:
    hub = await started_hub(bus)
    yield hub
    await hub.stop()


async def subscribed(client: Client, channel: str, since: int | None = None) -> None:
    await client.hub.subscribe(client.conn, channel, since=since)
    assert await client.recv() == {"type": "subscribed", "channel": channel}


class TestFanOut:
    async def test_event_reaches_only_subscribers_of_its_channel(
        self, hub: WebSocketHub, bus: InProcessEventBus
    ) -> None:
        trades, risk = await Client(hub).join(), await Client(hub).join()
        await subscribed(trades, "trades")
        await subscribed(risk, "risk")

        await bus.publish("trades", EventType.TRADE_EXECUTION, {"id": 1})
        await bus.publish("risk", EventType.RISK_ALERT, {"id": 2})

        got = await trades.recv()
        assert (got["channel"], got["seq"], got["data"]) == ("trades", 1, {"id": 1})
        assert (await risk.recv())["channel"] == "risk"
        assert trades.socket.received.empty()

    async def test_user_event_reaches_only_that_user(
        self, hub: WebSocketHub, bus: InProcessEventBus
    ) -> None:
        alice_id = uuid.uuid4()
        alice = await Client(hub, user_id=alice_id).join()
        bob = await Client(hub, user_id=uuid.uuid4()).join()
        anonymous = await Client(hub).join()
        for client in (alice, bob, anonymous):
            await subscribed(client, "portfolio")

        await bus.publish("portfolio", EventType.PORTFOLIO_UPDATE, {"mine": 1}, user_id=alice_id)
        await bus.publish("portfolio", EventType.PORTFOLIO_UPDATE, {"public": 1})

        assert (await alice.recv())["data"] == {"mine": 1}
        assert (await alice.recv())["data"] == {"public": 1}
        # The next thing the others get is the public event: Alice's never reached them.
        assert (await bob.recv())["data"] == {"public": 1}
        assert (await anonymous.recv())["data"] == {"public": 1}

    async def test_unsubscribed_client_gets_no_more_events(
        self, hub: WebSocketHub, bus: InProcessEventBus
    ) -> None:
        client = await Client(hub).join()
        await subscribed(client, "trades")
        await subscribed(client, "risk")
        hub.unsubscribe(client.conn, "trades")
        assert await client.recv() == {"type": "unsubscribed", "channel": "trades"}

        await bus.publish("trades", EventType.TRADE_EXECUTION, {})
        await bus.publish("risk", EventType.RISK_ALERT, {})
        assert (await client.recv())["channel"] == "risk"
        assert (await hub.health()).data["subscriptions"] == 1

    async def test_the_bus_knows_which_channels_clients_hear(
        self, hub: WebSocketHub, bus: InProcessEventBus
    ) -> None:
        channel = f"agent:{uuid.uuid4()}"
        assert not bus.listening(channel)
        one, two = await Client(hub).join(), await Client(hub).join()
        await subscribed(one, channel)
        await subscribed(two, channel)
        assert bus.listening(channel)
        assert not bus.listening("trades")

        hub.unsubscribe(one.conn, channel)
        assert bus.listening(channel)
        await two.leave()
        assert not bus.listening(channel)

    async def test_channels_per_connection_are_capped(self, bus: InProcessEventBus) -> None:
        hub = await started_hub(bus, max_channels=2)
        try:
            client = await Client(hub).join()
            await subscribed(client, "market:A")
            await subscribed(client, "market:B")
            await subscribed(client, "market:B")
            with pytest.raises(ValueError, match="at most 2 channels"):
                await hub.subscribe(client.conn, "market:C")
            assert client.conn.channels == {"market:A", "market:B"}
        finally:
            await hub.stop()


class TestReplay:
    async def test_since_replays_missed_events_before_live_ones(
        self, hub: WebSocketHub, bus: InProcessEventBus
    ) -> None:
        for n in range(1, 4):
            await bus.publish("trades", EventType.TRADE_EXECUTION, {"n": n})
        client = await Client(hub).join()
        await subscribed(client, "trades", since=1)
        await bus.publish("trades", EventType.TRADE_EXECUTION, {"n": 4})
        assert [(await client.recv())["seq"] for _ in range(3)] == [2, 3, 4]

    async def test_replay_skips_other_users_events(
        self, hub: WebSocketHub, bus: InProcessEventBus
    ) -> None:
        mine = uuid.uuid4()
        await bus.publish("trades", EventType.TRADE_EXECUTION, {"n": 1}, user_id=uuid.uuid4())
        await bus.publish("trades", EventType.TRADE_EXECUTION, {"n": 2}, user_id=mine)
        client = await Client(hub, user_id=mine).join()
        await subscribed(client, "trades", since=0)
        assert (await client.recv())["data"] == {"n": 2}

    async def test_since_on_a_channel_without_history_is_refused(self, hub: WebSocketHub) -> None:
        client = await Client(hub).join()
        with pytest.raises(ValueError, match="no history"):
            await hub.subscribe(client.conn, "market:BTC", since=0)
        assert client.conn.channels == set()


class TestSlowConsumer:
    async def test_full_queue_drops_the_client_and_not_the_others(
        self, bus: InProcessEventBus
    ) -> None:
        hub = await started_hub(bus, queue_size=4)
        try:
            fast, slow = await Client(hub).join(), await Client(hub, stalled=True).join()
            await subscribed(fast, "market:BTC")
            await hub.subscribe(slow.conn, "market:BTC")

            for n in range(1, 21):
                await bus.publish("market:BTC", EventType.MARKET_DATA, {"n": n})
                # The fast client keeps up; the stalled one's queue only grows.
                assert (await fast.recv())["data"] == {"n": n}

            await asyncio.wait_for(slow.socket.closed.wait(), WAIT)
            assert slow.socket.close_code == CLOSE_SLOW_CONSUMER
            await asyncio.wait_for(slow.task, WAIT)  # type: ignore[arg-type]
            health = await hub.health()
            assert health.data["dropped_slow"] == 1
            assert health.data["connections"] == 1
        finally:
            await hub.stop()


class TestHeartbeat:
    async def test_silent_client_is_dropped_and_a_live_one_kept(
        self, bus: InProcessEventBus
    ) -> None:
        hub = await started_hub(bus, heartbeat_seconds=0.05, heartbeat_timeout_seconds=1.0)
        try:
            silent, live = await Client(hub).join(), await Client(hub).join()

            async def answer_pings() -> None:
                while True:
                    if (await live.recv()) == {"type": "ping"}:
                        live.conn.touch()

            answering = asyncio.create_task(answer_pings())
            assert await silent.recv() == {"type": "ping"}
            await asyncio.wait_for(silent.socket.closed.wait(), WAIT)
            answering.cancel()

            assert silent.socket.close_code == CLOSE_HEARTBEAT_TIMEOUT
            assert live.socket.close_code is None
            assert (await hub.health()).data["dropped_heartbeat"] == 1
        finally:
            await hub.stop()


class TestLifecycle:
    async def test_stop_closes_every_client(self, bus: InProcessEventBus) -> None:
        hub = await started_hub(bus)
        clients = [await Client(hub).join() for _ in range(3)]
        await hub.stop()
        for client in clients:
            assert client.socket.close_code == CLOSE_GOING_AWAY
            await asyncio.wait_for(client.task, WAIT)  # type: ignore[arg-type]
        assert hub.connection_count == 0

    async def test_client_leaving_is_forgotten(self, hub: WebSocketHub) -> None:
        client = await Client(hub).join()
        await subscribed(client, "trades")
        await client.leave()
        health = await hub.health()
        assert (health.status, health.data["connections"]) == (HealthStatus.HEALTHY, 0)
        assert health.data["subscriptions"] == 0

    async def test_hub_not_started_refuses_clients(self, bus: InProcessEventBus) -> None:
        hub = WebSocketHub(bus, queue_size=10, heartbeat_seconds=1, heartbeat_timeout_seconds=2)
        socket = MemorySocket()

        async def never_read(conn: Connection) -> None:
            pytest.fail("a client was served by a hub that is not started")

        await hub.serve(socket, never_read)
        assert socket.close_code == CLOSE_GOING_AWAY

    def test_timeout_must_exceed_the_heartbeat(self, bus: InProcessEventBus) -> None:
        with pytest.raises(ValueError, match="heartbeat"):
            WebSocketHub(bus, queue_size=10, heartbeat_seconds=5, heartbeat_timeout_seconds=5)
