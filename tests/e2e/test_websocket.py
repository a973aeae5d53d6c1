"""/ws on the real server: the protocol, and the events real actions cause.

This is the tier that would have caught /ws refusing every connection with a 500 in the
shipped app while the router-level tests were green.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import WAIT, event_of, subscriber
from tests.e2e.server import LiveServer

ENVELOPE = {"type", "timestamp", "channel", "seq", "data"}
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def assert_envelope(frame: dict[str, Any], kind: str, channel: str) -> None:
    assert set(frame) == ENVELOPE, frame
    assert frame["type"] == kind
    assert frame["channel"] == channel
    assert isinstance(frame["seq"], int)
    assert frame["seq"] >= 1
    assert ISO_UTC.match(frame["timestamp"]), frame["timestamp"]
    assert isinstance(frame["data"], dict)


async def market_buy(http: httpx.AsyncClient, quantity: str = "0.001") -> dict[str, Any]:
    body = {"symbol": "BTC/USD", "side": "buy", "order_type": "market", "quantity": quantity}
    response = await http.post("/api/v1/trading/paper/order", json=body)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    assert order["status"] == "filled", order
    return order


def of_order(order_id: str) -> Any:
    return lambda f: f.get("type") == "trade_execution" and f["data"].get("id") == order_id


class TestProtocol:
    async def test_connects_through_the_real_app(self, server: LiveServer) -> None:
        async with connect(server.ws_url, ping_interval=None, open_timeout=WAIT) as ws:
            assert ws.response is not None
            assert ws.response.status_code == 101

    async def test_subscribe_and_ping(self, server: LiveServer) -> None:
        async with subscriber(server, "trades") as sub:
            await sub.send({"type": "ping"})
            assert await sub.until(lambda f: f["type"] != "ping") == {"type": "pong"}
            await sub.send({"type": "unsubscribe", "channel": "trades"})
            assert await sub.until(lambda f: f["type"] != "ping") == {
                "type": "unsubscribed",
                "channel": "trades",
            }

    @pytest.mark.parametrize(
        ("message", "reason"),
        [
            ("{not json", "invalid JSON"),
            ("[1, 2]", "a message must be a JSON object"),
            ('{"channel": "trades"}', 'a message needs a "type"'),
            ('{"type": "dance"}', "unknown message type 'dance'"),
            ('{"type": "subscribe", "channel": "nowhere"}', "unknown channel 'nowhere'"),
            ('{"type": "subscribe"}', "channel: Field required"),
        ],
    )
    async def test_malformed_message_gets_an_error_and_the_connection_stays(
        self, server: LiveServer, message: str, reason: str
    ) -> None:
        async with subscriber(server) as sub:
            await sub.send(message)
            error = await sub.until(lambda f: f["type"] != "ping")
            assert error["type"] == "error", error
            assert reason in error["message"], error
            await sub.send({"type": "ping"})
            assert await sub.until(lambda f: f["type"] != "ping") == {"type": "pong"}


class TestProtocolDocument:
    async def test_asyncapi_document_names_every_channel_and_event(
        self, http: httpx.AsyncClient
    ) -> None:
        response = await http.get("/asyncapi.json")
        assert response.status_code == 200
        doc = response.json()
        assert doc["asyncapi"].startswith("3.")
        addresses = {c.get("address") for c in doc["channels"].values()}
        for channel in ("trades", "portfolio", "agents", "market:{symbol}", "agent:{agentId}"):
            assert any(channel.split(":")[0] in str(a) for a in addresses), (channel, addresses)
        text = response.text
        for event in (
            "trade_execution",
            "portfolio_update",
            "market_data",
            "agent_decision",
            "agent_status",
            "agent_run",
        ):
            assert event in text, event


class TestEventsOfRealActions:
    async def test_filled_order_reaches_trades_and_portfolio(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        async with subscriber(server, "trades", "portfolio") as sub:
            order = await market_buy(http)
            trade = await sub.until(of_order(order["id"]))
            assert_envelope(trade, "trade_execution", "trades")
            assert trade["data"]["status"] == "filled"
            fills = trade["data"]["fills"]
            assert fills
            assert sum(Decimal(f["quantity"]) for f in fills) == Decimal("0.001")
            update = await sub.until(event_of("portfolio_update", "portfolio"))
            assert_envelope(update, "portfolio_update", "portfolio")
            assert update["data"]["account_id"] == order["account_id"]

            second = await market_buy(http)
            next_trade = await sub.until(of_order(second["id"]))
            assert next_trade["seq"] == trade["seq"] + 1, "seq counts per channel"

    async def test_ticking_market_reaches_its_channel(self, server: LiveServer) -> None:
        async with subscriber(server, "market:BTC/USD") as sub:
            tick = await sub.until(event_of("market_data", "market:BTC/USD"))
            assert_envelope(tick, "market_data", "market:BTC/USD")
            assert tick["data"]["symbol"] == "BTC/USD"
            assert Decimal(tick["data"]["bid"]) < Decimal(tick["data"]["ask"])
            later = await sub.until(event_of("market_data", "market:BTC/USD"))
            assert later["seq"] > tick["seq"]

    async def test_a_symbol_written_as_in_rest_paths_names_the_same_channel(
        self, server: LiveServer
    ) -> None:
        async with subscriber(server) as sub:
            await sub.send({"type": "subscribe", "channel": "market:eth-usd"})
            ack = await sub.until(lambda f: f["type"] == "subscribed")
            assert ack["channel"] == "market:ETH/USD"
            tick = await sub.until(event_of("market_data", "market:ETH/USD"))
            assert tick["data"]["symbol"] == "ETH/USD"

    async def test_reconnect_with_since_replays_what_was_missed(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        async with subscriber(server, "trades") as sub:
            first = await market_buy(http)
            seen = (await sub.until(of_order(first["id"])))["seq"]
        missed = [await market_buy(http), await market_buy(http)]
        async with subscriber(server) as sub:
            await sub.subscribe("trades", since=seen)
            replayed = [await sub.until(of_order(o["id"])) for o in missed]
        assert [f["seq"] for f in replayed] == [seen + 1, seen + 2]
        for frame in replayed:
            assert_envelope(frame, "trade_execution", "trades")
