"""The /ws protocol: its AsyncAPI 3.0 document, and the models frames are checked with.

A client reads the document to know every channel, message and payload; the models
behind it must accept what the publishers really send and refuse anything else, so
that a payload drifting from the document fails a test rather than a dashboard.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel, ValidationError

from connectors.base import Ticker
from core.config import Settings
from core.version import __version__
from main_consolidated import create_app
from models.agents import DecisionRead
from models.asyncapi import CHANNELS, SCHEMA_FORMAT, SCHEMA_REF, asyncapi_document
from models.base import decimal_to_str
from models.enums import (
    ActionTaken,
    DecisionStatus,
    DecisionTrigger,
    DecisionType,
    Liquidity,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from models.events import FIXED_CHANNELS, Event, EventType, dumps, encode_event, market_channel
from models.market import TickerRead
from models.portfolio import PortfolioSnapshotRead
from models.trading import FillRead, OrderRead
from models.ws_protocol import (
    EVENT_MODELS,
    AgentDecisionEvent,
    AgentRunEvent,
    AgentStatusEvent,
    DecisionData,
    ErrorMessage,
    FillData,
    MarketDataEvent,
    OrderCancelledEvent,
    OrderData,
    PortfolioFillData,
    PortfolioSnapshotData,
    PortfolioUpdateEvent,
    ServerPingMessage,
    ServerPongMessage,
    SubscribedMessage,
    TickerData,
    TradeExecutionEvent,
    UnsubscribedMessage,
    parse_server_message,
)
from services.agents.run_stream import RunStream
from services.container import Services
from services.infra.event_bus import InProcessEventBus
from services.market_data.service import ticker_data
from tests.api.conftest import running_app

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
KEY = re.compile(r"^[\w\d.\-_]+$")  # AsyncAPI's pattern for component and message keys

# The fields AsyncAPI 3.0.0 allows on each object (its JSON Schema closes them all).
ROOT_FIELDS = {
    "asyncapi",
    "id",
    "info",
    "servers",
    "defaultContentType",
    "channels",
    "operations",
    "components",
}
SERVER_FIELDS = {
    "host",
    "protocol",
    "protocolVersion",
    "pathname",
    "description",
    "title",
    "summary",
    "variables",
    "security",
    "tags",
    "externalDocs",
    "bindings",
}
CHANNEL_FIELDS = {
    "address",
    "messages",
    "title",
    "summary",
    "description",
    "servers",
    "parameters",
    "tags",
    "externalDocs",
    "bindings",
}
PARAMETER_FIELDS = {"enum", "default", "description", "examples", "location"}
OPERATION_FIELDS = {
    "action",
    "channel",
    "title",
    "summary",
    "description",
    "security",
    "tags",
    "externalDocs",
    "bindings",
    "traits",
    "messages",
    "reply",
}
MESSAGE_FIELDS = {
    "headers",
    "payload",
    "correlationId",
    "contentType",
    "name",
    "title",
    "summary",
    "description",
    "tags",
    "externalDocs",
    "bindings",
    "examples",
    "traits",
}
# JSON Schema keywords draft-07 does not have: the schemas must not need them.
NOT_DRAFT_07 = {
    "$defs",
    "prefixItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentRequired",
    "dependentSchemas",
    "$dynamicRef",
    "$dynamicAnchor",
    "$anchor",
    "minContains",
    "maxContains",
}
ANNOTATIONS = {"description", "title", "default", "examples", "deprecated"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi_document(host="cival.test:8000")


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict), ref
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def payload_models() -> list[type[BaseModel]]:
    return list(dict.fromkeys(m.model for c in CHANNELS for m in c.messages))


class TestDocument:
    def test_root_info_and_server(self, doc: dict[str, Any]) -> None:
        assert set(doc) <= ROOT_FIELDS
        assert doc["asyncapi"] == "3.0.0"
        assert doc["info"]["title"]
        assert doc["info"]["version"] == __version__
        assert doc["defaultContentType"] == "application/json"
        (server,) = doc["servers"].values()
        assert set(server) <= SERVER_FIELDS
        assert (server["host"], server["protocol"]) == ("cival.test:8000", "ws")

    def test_every_reference_resolves(self, doc: dict[str, Any]) -> None:
        refs = [node["$ref"] for node in walk(doc) if "$ref" in node]
        assert len(refs) > 100
        for ref in refs:
            resolve(doc, ref)

    def test_channels(self, doc: dict[str, Any]) -> None:
        for key, channel in doc["channels"].items():
            assert KEY.fullmatch(key)
            assert set(channel) <= CHANNEL_FIELDS, key
            assert isinstance(channel["address"], str)
            for name in re.findall(r"{(\w+)}", channel["address"]):
                assert set(channel["parameters"][name]) <= PARAMETER_FIELDS
            for message_key, message in channel["messages"].items():
                assert KEY.fullmatch(message_key)
                assert message == {"$ref": f"#/components/messages/{message_key}"}

    def test_operations_use_their_channels_messages(self, doc: dict[str, Any]) -> None:
        for key, operation in doc["operations"].items():
            assert set(operation) <= OPERATION_FIELDS, key
            assert operation["action"] in ("send", "receive")
            channel_ref = operation["channel"]["$ref"]
            channel = resolve(doc, channel_ref)
            replies = operation.get("reply", {}).get("messages", [])
            for message in operation["messages"] + replies:
                # AsyncAPI: an operation's messages are a subset of its channel's.
                prefix, _, message_key = message["$ref"].rpartition("/")
                assert prefix == f"{channel_ref}/messages", (key, message)
                assert message_key in channel["messages"]

    def test_messages_and_their_payloads(self, doc: dict[str, Any]) -> None:
        components = doc["components"]
        for key, message in components["messages"].items():
            assert set(message) <= MESSAGE_FIELDS, key
            assert message["contentType"] == "application/json"
            wrapper = resolve(doc, message["payload"]["$ref"])
            assert wrapper["schemaFormat"] == SCHEMA_FORMAT
            schema = wrapper["schema"]
            # The message's name is the frame's `type`.
            assert schema["properties"]["type"]["const"] == message["name"]

    def test_schemas_are_multi_format_and_stay_within_draft_07(self, doc: dict[str, Any]) -> None:
        for name, wrapper in doc["components"]["schemas"].items():
            assert KEY.fullmatch(name)
            assert set(wrapper) == {"schemaFormat", "schema"}
            assert wrapper["schemaFormat"] == SCHEMA_FORMAT
            for node in walk(wrapper["schema"]):
                if "properties" in node:  # property names are not keywords
                    continue
                assert not NOT_DRAFT_07 & set(node), (name, node)
                if "$ref" in node:  # draft-07 ignores a $ref's siblings: annotations only
                    assert set(node) - {"$ref"} <= ANNOTATIONS, (name, node)
                    assert node["$ref"].endswith("/schema")

    def test_names_every_event_type_and_channel(self, doc: dict[str, Any]) -> None:
        names = {m["name"] for m in doc["components"]["messages"].values()}
        assert set(EventType) <= names
        control = {"subscribe", "unsubscribe", "ping", "pong", "subscribed", "unsubscribed"}
        assert control | {"error"} <= names
        addresses = {c["address"] for c in doc["channels"].values()}
        assert addresses == {*FIXED_CHANNELS, "market:{symbol}", "agent:{agentId}", "/ws"}
        assert set(EVENT_MODELS) == set(EventType)

    def test_each_event_is_on_its_channel(self, doc: dict[str, Any]) -> None:
        on: dict[str, set[str]] = {}
        for channel in doc["channels"].values():
            for ref in channel["messages"].values():
                name = resolve(doc, ref["$ref"])["name"]
                on.setdefault(channel["address"], set()).add(name)
        assert on["trades"] == {"trade_execution", "order_cancelled"}
        assert on["portfolio"] == {"portfolio_update"}
        assert on["agents"] == {"agent_decision", "agent_status"}
        assert on["agent:{agentId}"] == {"agent_run"}
        assert on["market:{symbol}"] == {"market_data"}
        assert on["risk"] == {"risk_alert"}
        assert "notifications" not in on

    @pytest.mark.parametrize("model", payload_models(), ids=lambda m: m.__name__)
    def test_each_schema_is_the_models(self, doc: dict[str, Any], model: type[BaseModel]) -> None:
        schema = model.model_json_schema(ref_template=SCHEMA_REF)
        defs = schema.pop("$defs", {})
        schemas = doc["components"]["schemas"]
        assert schemas[model.__name__]["schema"] == schema
        for name, definition in defs.items():
            assert schemas[name]["schema"] == definition


async def test_it_is_served_with_the_host_asked_for(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    served = response.json()
    assert served["servers"]["cival"]["host"] == "cival.test"
    assert served == orjson.loads(orjson.dumps(asyncapi_document(host="cival.test")))


# --- frames as the publishers build them --------------------------------------------


def frame(channel: str, event_type: str, data: dict[str, Any], seq: int = 7) -> str:
    """The text a client receives, serialized by the bus's own encoder."""
    return encode_event(channel, event_type, data, timestamp=NOW).with_seq(seq).text


def an_order(**changes: Any) -> OrderRead:
    fill = FillRead(
        id=uuid.uuid4(),
        quantity=Decimal("0.25"),
        price=Decimal("64000.5"),
        fee=Decimal("16.000125"),
        fee_asset="USD",
        liquidity=Liquidity.TAKER,
        realized_pnl=Decimal(0),
        executed_at=NOW,
    )
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "account_id": uuid.uuid4(),
        "agent_id": None,
        "client_order_id": "c-1",
        "symbol": "BTC/USD",
        "side": OrderSide.BUY,
        "order_type": OrderType.MARKET,
        "time_in_force": TimeInForce.IOC,
        "quantity": Decimal("0.25"),
        "price": None,
        "stop_price": None,
        "status": OrderStatus.FILLED,
        "filled_quantity": Decimal("0.25"),
        "average_price": Decimal("64000.5"),
        "fees": Decimal("16.000125"),
        "locked_amount": Decimal(0),
        "reject_reason": None,
        "strategy": None,
        "reasoning": "because",
        "created_at": NOW,
        "updated_at": NOW,
        "triggered_at": None,
        "closed_at": NOW,
        "fills": [fill],
    }
    return OrderRead(**(fields | changes))


def announced(order: OrderRead) -> dict[str, Any]:
    """services/paper_trading/service.py `_announce`."""
    data = order.model_dump(mode="json", exclude={"fills"})
    data["fills"] = [f.model_dump(mode="json") for f in order.fills]
    return data


def a_decision() -> DecisionRead:
    return DecisionRead(
        id=uuid.uuid4(),
        agent_id=uuid.uuid4(),
        created_at=NOW,
        trigger=DecisionTrigger.MANUAL,
        decision_type=DecisionType.TRADE,
        status=DecisionStatus.EXECUTED,
        status_reason="0.001 filled at 64000",
        action_taken=ActionTaken.BUY,
        symbol="BTC/USD",
        side="buy",
        quantity=Decimal("0.001"),
        price=None,
        order_type="market",
        confidence_score=Decimal("0.8"),
        reasoning="trend up",
        market_data={"context": {"big": "blob"}},
        result={"order": {"status": "filled"}},
        execution_time_ms=12,
        prompt_tokens=0,
        completion_tokens=0,
        cost=Decimal(0),
        llm_call_id=uuid.uuid4(),
        coordination_id=None,
    )


class TestPublishedFramesValidate:
    def test_trade_execution(self) -> None:
        order = an_order()
        parsed = parse_server_message(frame("trades", "trade_execution", announced(order)))
        assert isinstance(parsed, TradeExecutionEvent)
        assert (parsed.seq, parsed.timestamp) == (7, NOW)
        assert parsed.data.id == order.id
        assert parsed.data.average_price == Decimal("64000.5")
        assert parsed.data.fills[0].fee == Decimal("16.000125")

    def test_a_resting_order_is_announced_without_fills(self) -> None:
        resting = an_order(
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            price=Decimal(60000),
            status=OrderStatus.PENDING,
            filled_quantity=Decimal(0),
            average_price=None,
            fees=Decimal(0),
            locked_amount=Decimal("15030"),
            closed_at=None,
            fills=[],
        )
        parsed = parse_server_message(frame("trades", "trade_execution", announced(resting)))
        assert isinstance(parsed, TradeExecutionEvent)
        assert parsed.data.fills == []

    def test_order_cancelled(self) -> None:
        order = an_order(status=OrderStatus.CANCELLED, reject_reason="cancelled by the user")
        data = order.model_dump(mode="json")  # cancel_order: the whole read, fills included
        parsed = parse_server_message(frame("trades", "order_cancelled", data))
        assert isinstance(parsed, OrderCancelledEvent)
        assert parsed.data.status is OrderStatus.CANCELLED

    def test_portfolio_update_after_fills(self) -> None:
        # services/paper_trading/service.py `_apply_fills`: plain decimal strings.
        data = {
            "kind": "fill",
            "account_id": str(uuid.uuid4()),
            "symbol": "BTC/USD",
            "position_quantity": decimal_to_str(Decimal("0.000000000000000000")),
            "cash": decimal_to_str(Decimal("9983.999875000000000000")),
            "realized_pnl": decimal_to_str(Decimal("-0.5")),
        }
        parsed = parse_server_message(frame("portfolio", "portfolio_update", data))
        assert isinstance(parsed, PortfolioUpdateEvent)
        assert isinstance(parsed.data, PortfolioFillData)
        assert parsed.data.position_quantity == 0
        assert parsed.data.cash == Decimal("9983.999875")

    def test_a_decimal_in_exponent_notation_is_refused(self) -> None:
        data = {
            "kind": "fill",
            "account_id": str(uuid.uuid4()),
            "symbol": "BTC/USD",
            "position_quantity": "0E-18",
            "cash": "1",
            "realized_pnl": "0",
        }
        with pytest.raises(ValidationError, match="a decimal string"):
            parse_server_message(frame("portfolio", "portfolio_update", data))

    def test_portfolio_update_of_a_snapshot(self) -> None:
        snapshot = PortfolioSnapshotRead(
            id=uuid.uuid4(),
            account_id=uuid.uuid4(),
            equity=Decimal("10012.5"),
            cash=Decimal("9000"),
            positions_value=Decimal("1012.5"),
            realized_pnl=Decimal(0),
            unrealized_pnl=Decimal("12.5"),
            fees=Decimal("0.4"),
            taken_at=NOW,
        )
        # portfolio_service.snapshot_account
        data = {"kind": "snapshot", **snapshot.model_dump(mode="json")}
        parsed = parse_server_message(frame("portfolio", "portfolio_update", data))
        assert isinstance(parsed, PortfolioUpdateEvent)
        assert isinstance(parsed.data, PortfolioSnapshotData)
        assert parsed.data.equity == Decimal("10012.5")

    def test_market_data(self) -> None:
        ticker = Ticker(
            "ETH/USD",
            Decimal("3100.1"),
            Decimal("3100.3"),
            Decimal("3100.2"),
            Decimal("1234.5"),
            Decimal("-20.25"),
            Decimal("-0.649"),
            NOW,
        )
        channel = market_channel(ticker.symbol)
        parsed = parse_server_message(frame(channel, "market_data", ticker_data(ticker)))
        assert isinstance(parsed, MarketDataEvent)
        assert parsed.channel == "market:ETH/USD"
        assert parsed.data.spread == Decimal("0.2")

    def test_agent_decision(self) -> None:
        decision = a_decision()
        data = decision.model_dump(mode="json", exclude={"market_data"})  # cycle.py
        parsed = parse_server_message(frame("agents", "agent_decision", data))
        assert isinstance(parsed, AgentDecisionEvent)
        assert parsed.data.id == decision.id
        assert parsed.data.confidence_score == Decimal("0.8")

    def test_agent_status(self) -> None:
        # services/agents/service.py `_announce_status`.
        data = {
            "agent_id": str(uuid.uuid4()),
            "status": "paused",
            "previous_status": "active",
            "reason": "daily cost budget of 1 USD spent",
        }
        parsed = parse_server_message(frame("agents", "agent_status", data))
        assert isinstance(parsed, AgentStatusEvent)
        assert parsed.data.reason == data["reason"]

    async def test_agent_run_events_of_a_real_run_stream(self) -> None:
        bus = InProcessEventBus()
        published: list[Event] = []
        bus.subscribe(published.append)
        agent_id = uuid.uuid4()
        stream = RunStream(bus, agent_id=agent_id, user_id=uuid.uuid4())
        await stream.started(input={"trigger": "manual"})
        async with stream.step("model"):
            pass
        await stream.message("a reasoning longer than one chunk", chunk_chars=10)
        await stream.finished({"decision_id": str(uuid.uuid4()), "status": "executed"})
        failing = RunStream(bus, agent_id=agent_id, user_id=uuid.uuid4())
        await failing.failed("cycle failed: RuntimeError", code="cycle_failed")

        kinds = []
        for event in published:
            parsed = parse_server_message(event.text)
            assert isinstance(parsed, AgentRunEvent)
            assert parsed.channel == f"agent:{agent_id}"
            kinds.append(parsed.data.type.value)
        assert kinds == [
            "RUN_STARTED",
            "STEP_STARTED",
            "STEP_FINISHED",
            "TEXT_MESSAGE_START",
            *["TEXT_MESSAGE_CONTENT"] * 4,
            "TEXT_MESSAGE_END",
            "RUN_FINISHED",
            "RUN_ERROR",
        ]

    @pytest.mark.parametrize(
        ("message", "model"),
        [
            ({"type": "subscribed", "channel": "market:BTC/USD"}, SubscribedMessage),
            ({"type": "unsubscribed", "channel": "trades"}, UnsubscribedMessage),
            ({"type": "pong"}, ServerPongMessage),
            ({"type": "ping"}, ServerPingMessage),
            ({"type": "error", "message": "unknown channel 'orders'"}, ErrorMessage),
        ],
    )
    def test_control_messages(self, message: dict[str, Any], model: type[BaseModel]) -> None:
        # services/infra/websocket_hub.py sends them through the same `dumps`.
        assert isinstance(parse_server_message(dumps(message).decode()), model)


def _tamper(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    envelope: dict[str, Any] = orjson.loads(text)
    change(envelope)
    return orjson.dumps(envelope).decode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(envelope: dict[str, Any]) -> None:
        node: Any = envelope
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(envelope: dict[str, Any]) -> None:
        node: Any = envelope
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return change


DRIFTS = {
    "an unknown field": _set("data.qty", "0.25"),
    "an unknown field in a fill": _set("data.fills.0.venue", "x"),
    "a missing field": _drop("data.status"),
    "a decimal as a number": _set("data.quantity", 0.25),
    "a decimal in exponent notation": _set("data.quantity", "1E-3"),
    "an unknown enum value": _set("data.side", "BUY"),
    "a time as a number": _set("data.created_at", 1767225600),
    "a malformed id": _set("data.id", "not-a-uuid"),
    "another channel": _set("channel", "portfolio"),
    "a seq below 1": _set("seq", 0),
    "a seq as a string": _set("seq", "7"),
    "an unknown envelope field": _set("source", "bus"),
    "an unknown type": _set("type", "trade_executed"),
}


class TestDriftIsCaught:
    @pytest.mark.parametrize("drift", list(DRIFTS))
    def test_a_trade_execution_that_drifted(self, drift: str) -> None:
        good = frame("trades", "trade_execution", announced(an_order()))
        assert isinstance(parse_server_message(good), TradeExecutionEvent)
        with pytest.raises(ValidationError):
            parse_server_message(_tamper(good, DRIFTS[drift]))

    def test_a_tick_on_another_symbols_channel(self) -> None:
        one = Decimal(1)
        data = ticker_data(Ticker("BTC/USD", one, one, one, one, one, one, NOW))
        with pytest.raises(ValidationError, match="a tick of BTC/USD on market:ETH/USD"):
            parse_server_message(frame("market:ETH/USD", "market_data", data))

    def test_a_portfolio_update_mixing_both_shapes(self) -> None:
        data = {
            "kind": "fill",
            "account_id": str(uuid.uuid4()),
            "symbol": "BTC/USD",
            "position_quantity": "1",
            "cash": "1",
            "realized_pnl": "0",
            "equity": "1",
        }
        with pytest.raises(ValidationError):
            parse_server_message(frame("portfolio", "portfolio_update", data))

    def test_an_agent_run_event_with_an_unknown_field(self) -> None:
        data = {"type": "STEP_STARTED", "timestamp": 1, "stepName": "model", "stage": 2}
        agent = f"agent:{uuid.uuid4()}"
        with pytest.raises(ValidationError):
            parse_server_message(frame(agent, "agent_run", data))
        del data["stage"]
        assert isinstance(parse_server_message(frame(agent, "agent_run", data)), AgentRunEvent)

    def test_an_agent_run_event_the_stream_never_sends(self) -> None:
        data = {"type": "STATE_SNAPSHOT", "snapshot": {}}
        with pytest.raises(ValidationError):
            parse_server_message(frame(f"agent:{uuid.uuid4()}", "agent_run", data))


@pytest.mark.parametrize(
    ("model", "mirrors", "left_out"),
    [
        (OrderData, OrderRead, set()),
        (FillData, FillRead, set()),
        (PortfolioSnapshotData, PortfolioSnapshotRead, set()),
        (TickerData, TickerRead, set()),
        (DecisionData, DecisionRead, {"market_data"}),
    ],
    ids=lambda m: getattr(m, "__name__", ""),
)
def test_event_data_has_the_fields_of_what_publishers_dump(
    model: type[BaseModel], mirrors: type[BaseModel], left_out: set[str]
) -> None:
    """The publishers dump these read models: a field added to one must be documented.
    `kind` is the publisher's own tag, not a field of the read model."""
    assert set(model.model_fields) - {"kind"} == set(mirrors.model_fields) - left_out


# --- what the running app's publishers send ------------------------------------------


@pytest.fixture
async def live(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[Services, httpx.AsyncClient, list[Event]]]:
    """The real app, and every event its services publish (as the hub would get them)."""
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
    )
    app = create_app(settings)
    async with running_app(app) as client:
        services: Services = app.state.services
        published: list[Event] = []
        unsubscribe = services.event_bus.subscribe(published.append)
        try:
            yield services, client, published
        finally:
            unsubscribe()


async def test_every_event_the_app_publishes_validates(
    live: tuple[Services, httpx.AsyncClient, list[Event]],
) -> None:
    services, client, published = live
    api = "/api/v1"
    assert (await client.post(f"{api}/market/subscribe/BTC-USD")).status_code == 200
    await services.market_data.advance()

    orders = f"{api}/trading/paper/order"
    bought = await client.post(
        orders, json={"symbol": "BTC/USD", "side": "buy", "quantity": "0.01"}
    )
    assert bought.status_code == 201, bought.text
    sold = await client.post(orders, json={"symbol": "BTC/USD", "side": "sell", "quantity": "0.01"})
    assert sold.status_code == 201, sold.text
    limit = {"symbol": "BTC/USD", "side": "buy", "order_type": "limit", "price": "1000"}
    resting = await client.post(orders, json={**limit, "quantity": "0.02"})
    assert resting.status_code == 201, resting.text
    cancelled = await client.delete(f"{api}/trading/paper/orders/{resting.json()['id']}")
    assert cancelled.status_code == 200, cancelled.text
    await services.portfolio.snapshot_account(uuid.UUID(bought.json()["account_id"]))

    agents = f"{api}/agents"
    agent = await client.post(agents, json={"name": "Drift", "symbols": ["BTC/USD"]})
    assert agent.status_code == 201, agent.text
    base = f"{agents}/{agent.json()['id']}"
    assert (await client.post(f"{base}/start")).status_code == 200
    assert (await client.post(f"{base}/execute-decision")).status_code == 200
    assert (await client.delete(base)).status_code == 204

    strategy = await client.post(
        f"{api}/strategies",
        json={
            "name": "Cross",
            "strategy_type": "trend_following",
            "parameters": {"fast_window": 3, "slow_window": 8},
            "symbols": ["BTC/USD"],
            "timeframe": "1m",
        },
    )
    assert strategy.status_code == 201, strategy.text
    await services.market_data.advance(61)  # a minute's candle closes
    await services.signals.settled()
    start = (services.market_data.ticker("BTC/USD").timestamp - timedelta(hours=2)).isoformat()
    job = await client.post(
        f"{api}/strategies/{strategy.json()['id']}/backtest-jobs",
        json={"symbol": "BTC/USD", "timeframe": "1m", "start": start},
    )
    assert job.status_code == 202, job.text
    await services.backtest_jobs.wait_for(uuid.UUID(job.json()["id"]))

    seen: dict[str, int] = {}
    for event in published:
        parsed = parse_server_message(event.text)
        seen[parsed.type] = seen.get(parsed.type, 0) + 1
    assert set(seen) == set(EventType) - {EventType.RISK_ALERT}, seen
    snapshots = [
        p
        for p in map(parse_server_message, (e.text for e in published))
        if isinstance(p, PortfolioUpdateEvent) and isinstance(p.data, PortfolioSnapshotData)
    ]
    assert len(snapshots) == 1
