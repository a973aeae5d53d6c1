"""/ws through a real uvicorn server on loopback and the `websockets` client.

A tiny app holds only this router, with the hub on `app.state.services` as the real
container provides it. A real server is needed for the slow-consumer test: only real
sockets push back when a client stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketException
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.deps import get_websocket_user_id
from api.websocket import router
from connectors.base import Ticker
from models.events import EventType, market_channel
from models.ws_protocol import (
    ErrorMessage,
    MarketDataEvent,
    ServerPingMessage,
    ServerPongMessage,
    SubscribedMessage,
    UnsubscribedMessage,
    parse_server_message,
)
from services.infra.event_bus import InProcessEventBus
from services.infra.websocket_hub import CLOSE_HEARTBEAT_TIMEOUT, CLOSE_SLOW_CONSUMER, WebSocketHub
from services.market_data.service import ticker_data

WAIT = 10.0
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class Server:
    url: str
    bus: InProcessEventBus
    hub: WebSocketHub


async def user_from_query(websocket: WebSocket) -> uuid.UUID | None:
    """Test resolver: the user named in ?user=, refused when it says so."""
    user = websocket.query_params.get("user")
    if user == "refused":
        raise WebSocketException(code=1008, reason="no valid token")
    return uuid.UUID(user) if user else None


@asynccontextmanager
async def serving(**hub_options: Any) -> AsyncIterator[Server]:
    bus = InProcessEventBus()
    options = {"queue_size": 100, "heartbeat_seconds": 30, "heartbeat_timeout_seconds": 60}
    hub = WebSocketHub(bus, **(options | hub_options))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        await hub.start()
        yield
        await hub.stop()
        await bus.stop()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    app.state.services = SimpleNamespace(websocket_hub=hub)
    app.dependency_overrides[get_websocket_user_id] = user_from_query

    # Listening before uvicorn runs: clients queue in the backlog, no readiness polling.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield Server(f"ws://127.0.0.1:{port}/ws", bus, hub)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serving() as running:
        yield running


def client(url: str, **options: Any) -> connect:
    return connect(url, ping_interval=None, open_timeout=WAIT, **options)


async def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
    return message


async def subscribe(ws: ClientConnection, channel: str, **extra: Any) -> None:
    await send(ws, {"type": "subscribe", "channel": channel, **extra})
    assert await recv(ws) == {"type": "subscribed", "channel": channel}


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; the code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


class TestSubscribe:
    async def test_subscriber_receives_the_event_envelope(self, server: Server) -> None:
        async with client(server.url) as ws:
            await subscribe(ws, "trades")
            await server.bus.publish("trades", EventType.TRADE_EXECUTION, {"qty": "0.5"})
            event = await recv(ws)
            assert list(event) == ["type", "timestamp", "channel", "seq", "data"]
            assert (event["type"], event["channel"], event["seq"], event["data"]) == (
                "trade_execution",
                "trades",
                1,
                {"qty": "0.5"},
            )

    async def test_channel_name_is_normalized(self, server: Server) -> None:
        async with client(server.url) as ws:
            await subscribe(ws, "market:BTC/USD")
            await send(ws, {"type": "subscribe", "channel": "market:eth-usd"})
            assert await recv(ws) == {"type": "subscribed", "channel": "market:ETH/USD"}

    async def test_since_replays_missed_events_first(self, server: Server) -> None:
        for n in range(1, 4):
            await server.bus.publish("risk", EventType.RISK_ALERT, {"n": n})
        async with client(server.url) as ws:
            await subscribe(ws, "risk", since=1)
            assert [(await recv(ws))["seq"] for _ in range(2)] == [2, 3]
            await server.bus.publish("risk", EventType.RISK_ALERT, {"n": 4})
            assert (await recv(ws))["seq"] == 4

    async def test_unsubscribed_channel_sends_nothing_more(self, server: Server) -> None:
        async with client(server.url) as ws:
            await subscribe(ws, "trades")
            await subscribe(ws, "risk")
            await send(ws, {"type": "unsubscribe", "channel": "trades"})
            assert await recv(ws) == {"type": "unsubscribed", "channel": "trades"}
            await server.bus.publish("trades", EventType.TRADE_EXECUTION, {})
            await server.bus.publish("risk", EventType.RISK_ALERT, {})
            # Events arrive in publish order: the trade would have come first.
            assert (await recv(ws))["channel"] == "risk"

    async def test_user_events_reach_only_their_user(self, server: Server) -> None:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        async with (
            client(f"{server.url}?user={alice}") as alice_ws,
            client(f"{server.url}?user={bob}") as bob_ws,
        ):
            await subscribe(alice_ws, "portfolio")
            await subscribe(bob_ws, "portfolio")
            await server.bus.publish(
                "portfolio", EventType.PORTFOLIO_UPDATE, {"a": 1}, user_id=alice
            )
            await server.bus.publish("portfolio", EventType.PORTFOLIO_UPDATE, {"b": 1}, user_id=bob)
            assert (await recv(alice_ws))["data"] == {"a": 1}
            assert (await recv(bob_ws))["data"] == {"b": 1}

    async def test_refused_user_is_turned_away(self, server: Server) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with client(f"{server.url}?user=refused"):
                pytest.fail("a refused client was accepted")
        assert refused.value.response.status_code == 403


class TestMessages:
    async def test_ping_is_answered_with_pong(self, server: Server) -> None:
        async with client(server.url) as ws:
            await send(ws, {"type": "ping"})
            assert await recv(ws) == {"type": "pong"}

    async def test_binary_frame_is_read_as_json(self, server: Server) -> None:
        async with client(server.url) as ws:
            await ws.send(b'{"type": "ping"}')
            assert await recv(ws) == {"type": "pong"}

    @pytest.mark.parametrize(
        ("message", "reason"),
        [
            ("not json", "invalid JSON"),
            ("[1, 2]", "a message must be a JSON object"),
            ("{}", 'a message needs a "type"'),
            ('{"type": "dance"}', "unknown message type 'dance'"),
            ('{"type": "subscribe"}', "channel: Field required"),
            ('{"type": "subscribe", "channel": "orders"}', "unknown channel 'orders'"),
            ('{"type": "subscribe", "channel": "market:BTC", "since": 3}', "no history"),
            ('{"type": "subscribe", "channel": "risk", "since": -1}', "since: Input should be"),
            ('{"type": "ping", "extra": 1}', "extra: Extra inputs are not permitted"),
        ],
    )
    async def test_malformed_message_gets_an_error_and_keeps_the_connection(
        self, server: Server, message: str, reason: str
    ) -> None:
        async with client(server.url) as ws:
            await send(ws, message)
            error = await recv(ws)
            assert error["type"] == "error"
            assert reason in error["message"]
            await send(ws, {"type": "ping"})
            assert await recv(ws) == {"type": "pong"}


class TestBackpressure:
    async def test_slow_consumer_is_dropped_while_a_fast_one_gets_everything(self) -> None:
        async with serving(queue_size=8) as server:
            blob = "x" * 65536
            # No compression, so the blobs really fill the buffers; max_queue=1: the slow
            # client stops reading its socket once one frame waits unread.
            async with (
                client(server.url, compression=None) as fast,
                client(server.url, compression=None, max_queue=1) as slow,
            ):
                await subscribe(fast, "market:BTC")
                await subscribe(slow, "market:BTC")
                seqs: list[int] = []
                # Publish until the slow client's queue overflows (its socket buffers fill
                # first); the fast one reads each event before the next is published.
                while server.hub.dropped_slow == 0 and len(seqs) < 5000:
                    await server.bus.publish("market:BTC", EventType.MARKET_DATA, {"b": blob})
                    seqs.append((await recv(fast))["seq"])
                assert server.hub.dropped_slow == 1
                for _ in range(3):
                    await server.bus.publish("market:BTC", EventType.MARKET_DATA, {"b": blob})
                    seqs.append((await recv(fast))["seq"])
                assert seqs == list(range(1, len(seqs) + 1))
                assert await close_code(slow) == CLOSE_SLOW_CONSUMER


class TestHeartbeat:
    async def test_silent_client_is_dropped_and_an_answering_one_kept(self) -> None:
        async with (
            serving(heartbeat_seconds=0.1, heartbeat_timeout_seconds=1.0) as server,
            client(server.url) as silent,
            client(server.url) as live,
        ):

            async def answer_pings() -> None:
                while True:
                    if await recv(live) == {"type": "ping"}:
                        await send(live, {"type": "pong"})

            answering = asyncio.create_task(answer_pings())
            assert await recv(silent) == {"type": "ping"}
            assert await close_code(silent) == CLOSE_HEARTBEAT_TIMEOUT
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering
            await send(live, {"type": "ping"})
            while (message := await recv(live)) == {"type": "ping"}:
                pass
            assert message == {"type": "pong"}
            assert server.hub.dropped_heartbeat == 1


class TestFramesFollowTheProtocol:
    """What the socket really sends parses as the documented messages (models/ws_protocol.py)."""

    async def test_control_frames_and_an_event(self) -> None:
        async with (
            serving(heartbeat_seconds=0.1, heartbeat_timeout_seconds=30) as server,
            client(server.url) as ws,
        ):

            async def next_frame() -> Any:
                """The next frame that is not a heartbeat, checking those on the way."""
                while True:
                    parsed = parse_server_message(await asyncio.wait_for(ws.recv(), WAIT))
                    if not isinstance(parsed, ServerPingMessage):
                        return parsed

            await send(ws, {"type": "subscribe", "channel": "market:btc/usd"})
            subscribed = await next_frame()
            assert isinstance(subscribed, SubscribedMessage)
            assert subscribed.channel == "market:BTC/USD"

            price = Decimal("97000.5")
            ticker = Ticker("BTC/USD", price, price, price, price, price, price, NOW)
            await server.bus.publish(
                market_channel("BTC/USD"), EventType.MARKET_DATA, ticker_data(ticker)
            )
            event = await next_frame()
            assert isinstance(event, MarketDataEvent)
            assert (event.seq, event.data.last) == (1, price)

            await send(ws, {"type": "ping"})
            assert isinstance(await next_frame(), ServerPongMessage)
            await send(ws, {"type": "dance"})
            assert isinstance(await next_frame(), ErrorMessage)
            await send(ws, {"type": "unsubscribe", "channel": "market:BTC/USD"})
            assert isinstance(await next_frame(), UnsubscribedMessage)
            # Nothing but the heartbeat comes after that.
            heartbeat = parse_server_message(await asyncio.wait_for(ws.recv(), WAIT))
            assert isinstance(heartbeat, ServerPingMessage)
