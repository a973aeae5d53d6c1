"""The /ws protocol as models: what the server sends, a validator for it, and the
AsyncAPI 3.0 document of the whole protocol.

Frames are JSON text. The client sends `subscribe`, `unsubscribe`, `ping` and `pong`
(models/events.py; api/websocket.py parses them). The server sends control messages
(`subscribed`, `unsubscribed`, `pong`, its heartbeat `ping`, `error`) and events, each
in the envelope `{"type", "timestamp", "channel", "seq", "data"}`. Every event type has
its own envelope model here, whose `data` is what its publisher builds today:

    type              channel          publisher
    trade_execution   trades           services/paper_trading/service.py: an order placed,
                                       a resting order filled, a stop triggered
    order_cancelled   trades           services/paper_trading/service.py: a cancel
    portfolio_update  portfolio        services/paper_trading/service.py after fills, and
                                       services/portfolio/service.py for each snapshot
                                       (two shapes under one type: see PortfolioUpdateEvent)
    market_data       market:{SYMBOL}  services/market_data/service.py: each tick
    agent_decision    agents           services/agents/cycle.py: each decision cycle
    agent_status      agents           services/agents/service.py: a status change
    agent_run         agent:{id}       services/agents/run_stream.py: AG-UI events
    risk_alert        risk             nothing yet

`parse_server_message(frame)` validates one received frame against the model its
`type` names. The models refuse unknown fields and coerce nothing (a decimal must be a
decimal string, a time an ISO-8601 string, an id a UUID string), so a payload that
drifts from what is documented here fails to parse. Two exceptions: an AG-UI event is
closed at its top level only (what it nests is ag-ui-protocol's own, open models), and
risk_alert's data has no shape yet. Validate JSON text with them
(`model_validate_json`), not Python objects: strict mode takes a UUID or a time only
as a JSON string.

`asyncapi_document()` is the AsyncAPI 3.0 document of the protocol, served at
GET /asyncapi.json. Its `components.schemas` are these models' JSON Schemas as
pydantic writes them, each wrapped as a Multi Format Schema Object declaring JSON
Schema draft-07 (which these schemas stay within; tests/api/test_asyncapi.py checks).
"""

from __future__ import annotations

import inspect
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal, Self, get_args

from ag_ui.core import (
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from core.version import __version__
from models.base import decimal_to_str
from models.enums import (
    ActionTaken,
    AgentStatus,
    DecisionStatus,
    DecisionTrigger,
    DecisionType,
    Liquidity,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from models.events import (
    Channel,
    EventType,
    PingMessage,
    PongMessage,
    SubscribeMessage,
    UnsubscribeMessage,
)

# --- wire types -----------------------------------------------------------------------

_PLAIN_DECIMAL = r"-?[0-9]+(?:\.[0-9]+)?"


def _decimal_of(pattern: str, form: str) -> Any:
    compiled = re.compile(pattern)

    def parse(value: Any) -> Any:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise ValueError(f"expected {form}, got {value!r}")
        return Decimal(value)

    return parse


PlainDecimal = Annotated[
    Decimal,
    BeforeValidator(_decimal_of(_PLAIN_DECIMAL, "a decimal string such as '0.1'")),
    PlainSerializer(decimal_to_str, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "decimal",
            "pattern": f"^{_PLAIN_DECIMAL}$",
            "examples": ["0.1"],
        }
    ),
]
"""A decimal as events carry it: a JSON string in plain notation, never a number."""

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MARKET_CHANNEL = r"^market:[A-Z0-9]{1,20}(?:[/_.-][A-Z0-9]{1,20})?$"
AGENT_CHANNEL = f"^agent:{_UUID}$"


class _Strict(BaseModel):
    """Unknown fields are refused and nothing is coerced (validate JSON text)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- event data -----------------------------------------------------------------------


class FillData(_Strict):
    """One fill of an order."""

    id: uuid.UUID = Field(description="The fill's id.")
    quantity: PlainDecimal = Field(description="Base quantity filled.")
    price: PlainDecimal = Field(description="Execution price, in the quote asset.")
    fee: PlainDecimal = Field(description="Fee charged on this fill.")
    fee_asset: str = Field(description="The asset the fee was charged in.")
    liquidity: Liquidity = Field(
        description="maker: the order rested and was traded through; taker: it took the book."
    )
    realized_pnl: PlainDecimal = Field(
        description="PnL this fill realized, gross of fees (0 for a buy)."
    )
    executed_at: datetime = Field(description="When the fill was booked (UTC).")


class OrderData(_Strict):
    """An order as it stands after what happened to it, with all its fills so far: the
    same fields as the REST API's order (GET /api/v1/trading/paper/orders/{order_id})."""

    id: uuid.UUID = Field(description="The order's id.")
    account_id: uuid.UUID = Field(description="The paper account it trades.")
    agent_id: uuid.UUID | None = Field(description="The agent that placed it; null: a user.")
    client_order_id: str | None = Field(description="The caller's idempotency key, if sent.")
    symbol: str = Field(description="The pair, as BASE/QUOTE.", examples=["BTC/USD"])
    side: OrderSide
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: PlainDecimal = Field(description="Ordered base quantity.")
    price: PlainDecimal | None = Field(description="Limit price; null without one.")
    stop_price: PlainDecimal | None = Field(description="Trigger price of a stop; else null.")
    status: OrderStatus
    filled_quantity: PlainDecimal = Field(description="Base quantity filled so far.")
    average_price: PlainDecimal | None = Field(
        description="Volume-weighted fill price; null until something filled."
    )
    fees: PlainDecimal = Field(description="Fees of all its fills.")
    locked_amount: PlainDecimal = Field(description="Funds or assets held for the open rest.")
    reject_reason: str | None = Field(
        description="Why it was rejected, or why its rest was cancelled; else null."
    )
    strategy: str | None = Field(description="The strategy named when it was placed.")
    reasoning: str | None = Field(description="The reasoning given when it was placed.")
    created_at: datetime
    updated_at: datetime
    triggered_at: datetime | None = Field(description="When a stop triggered; else null.")
    closed_at: datetime | None = Field(
        description="When it was filled, cancelled or rejected; null while open."
    )
    fills: list[FillData] = Field(description="Every fill of the order so far, oldest first.")


class PortfolioSnapshotData(_Strict):
    """A periodic valuation of one account (services/portfolio/service.py)."""

    kind: Literal["snapshot"] = Field(description="A whole valuation of the account.")
    id: uuid.UUID = Field(description="The snapshot's id.")
    account_id: uuid.UUID = Field(description="The account valued.")
    equity: PlainDecimal = Field(description="Cash plus positions at the mark.")
    cash: PlainDecimal = Field(description="Free plus locked balance of the base currency.")
    positions_value: PlainDecimal = Field(description="The positions at the mark.")
    realized_pnl: PlainDecimal = Field(description="Realized PnL, gross of fees.")
    unrealized_pnl: PlainDecimal = Field(description="The positions' value minus their cost.")
    fees: PlainDecimal = Field(description="Fees paid, all time.")
    taken_at: datetime = Field(description="When the valuation was taken (UTC).")


class PortfolioFillData(_Strict):
    """An account after one order's fills (services/paper_trading/service.py): its
    position in the order's symbol and its cash."""

    kind: Literal["fill"] = Field(description="The account after one order's fills.")
    account_id: uuid.UUID = Field(description="The account that traded.")
    symbol: str = Field(description="The pair traded.", examples=["BTC/USD"])
    position_quantity: PlainDecimal = Field(
        description="The account's position in `symbol` after the fills, in base units."
    )
    cash: PlainDecimal = Field(
        description="Free plus locked balance of the pair's quote asset after the fills."
    )
    realized_pnl: PlainDecimal = Field(
        description="The account's realized PnL after the fills (all symbols, gross of fees)."
    )


class TickerData(_Strict):
    """A symbol's latest ticker: GET /api/v1/market/live-data/{symbol} without `book`."""

    symbol: str = Field(description="The pair, as BASE/QUOTE.", examples=["BTC/USD"])
    bid: PlainDecimal = Field(description="Best bid.")
    ask: PlainDecimal = Field(description="Best ask.")
    last: PlainDecimal = Field(description="Last traded price.")
    spread: PlainDecimal = Field(description="ask - bid.")
    volume_24h: PlainDecimal = Field(description="Traded over the last 24h, in base units.")
    change_24h: PlainDecimal = Field(description="last - the price 24h ago.")
    change_percent_24h: PlainDecimal = Field(description="change_24h in percent of that price.")
    timestamp: datetime = Field(description="When the market produced this ticker (UTC).")


class DecisionData(_Strict):
    """A logged decision: the REST API's decision (GET
    /api/v1/agents/{agent_id}/decisions/{decision_id}) without `market_data`, the
    context it was made on, which is the bulk of the row (read it over REST)."""

    id: uuid.UUID = Field(description="The decision's id.")
    agent_id: uuid.UUID = Field(description="The agent that decided.")
    created_at: datetime
    trigger: DecisionTrigger = Field(description="What started the cycle.")
    decision_type: DecisionType | None = Field(description="Null when the model gave none.")
    status: DecisionStatus
    status_reason: str | None = Field(description="Why it has its status.")
    action_taken: ActionTaken | None = Field(description="What it did on the account.")
    symbol: str | None = Field(description="The symbol decided on, if any.")
    side: str | None = Field(description="buy or sell for a trade; else null.")
    quantity: PlainDecimal | None = Field(description="The sized quantity of a trade.")
    price: PlainDecimal | None = Field(description="A limit price, if the decision set one.")
    order_type: str | None = Field(description="The order type of a trade.")
    confidence_score: PlainDecimal | None = Field(description="The model's confidence, 0..1.")
    reasoning: str = Field(description="The model's reasoning (or why there is no decision).")
    result: dict[str, Any] = Field(
        description="What happened: the order (id, status, fill) or the rejection with its "
        "reason, the risk checks, the provider's error."
    )
    execution_time_ms: int | None = Field(description="How long the cycle took.")
    prompt_tokens: int
    completion_tokens: int
    cost: PlainDecimal = Field(description="What the model call cost, in USD.")
    llm_call_id: uuid.UUID | None = Field(description="The stored model call, if one was made.")
    coordination_id: uuid.UUID | None = Field(
        description="The coordination it was part of, if any."
    )


class AgentStatusData(_Strict):
    """An agent's status changed: started, stopped, deleted, paused (its daily budget
    spent) or in error (its provider unusable)."""

    agent_id: uuid.UUID = Field(description="The agent.")
    status: AgentStatus = Field(description="Its status now.")
    previous_status: AgentStatus = Field(description="Its status before.")
    reason: str | None = Field(
        description="Why: 'stopped by the user', 'deleted', the budget or provider problem; "
        "null when started."
    )


_AG_UI_CLOSED = ConfigDict(extra="forbid")


class AgUiRunStarted(RunStartedEvent):
    """RUN_STARTED: a decision cycle opened. `threadId` is the agent's id, `runId` the
    cycle's; `input.forwardedProps` holds the cycle's inputs (`{"trigger": ...}`)."""

    model_config = _AG_UI_CLOSED


class AgUiStepStarted(StepStartedEvent):
    """STEP_STARTED: a step of the cycle began (context, model, risk_check, execution)."""

    model_config = _AG_UI_CLOSED


class AgUiStepFinished(StepFinishedEvent):
    """STEP_FINISHED: that step ended (also when it failed)."""

    model_config = _AG_UI_CLOSED


class AgUiTextMessageStart(TextMessageStartEvent):
    """TEXT_MESSAGE_START: the agent's reasoning begins, as an assistant message."""

    model_config = _AG_UI_CLOSED


class AgUiTextMessageContent(TextMessageContentEvent):
    """TEXT_MESSAGE_CONTENT: a piece of the reasoning (at most 400 characters)."""

    model_config = _AG_UI_CLOSED


class AgUiTextMessageEnd(TextMessageEndEvent):
    """TEXT_MESSAGE_END: the reasoning is complete."""

    model_config = _AG_UI_CLOSED


class AgUiRunFinished(RunFinishedEvent):
    """RUN_FINISHED: the cycle ended; `result` is `{"decision_id", "status"}`, or
    `{"skipped": reason}` when another instance had decided moments before."""

    model_config = _AG_UI_CLOSED


class AgUiRunError(RunErrorEvent):
    """RUN_ERROR: the cycle failed; `code` is `cycle_failed` or the error's code
    (`agent_budget_spent`)."""

    model_config = _AG_UI_CLOSED


AgentRunData = Annotated[
    AgUiRunStarted
    | AgUiStepStarted
    | AgUiStepFinished
    | AgUiTextMessageStart
    | AgUiTextMessageContent
    | AgUiTextMessageEnd
    | AgUiRunFinished
    | AgUiRunError,
    Field(discriminator="type"),
]
"""The AG-UI events a decision cycle emits (ag-ui-protocol's models, camelCase keys,
optional fields without a value left out), closed to unknown fields."""


# --- envelopes ------------------------------------------------------------------------


class _Envelope(_Strict):
    timestamp: datetime = Field(description="When the event was published (ISO 8601, UTC).")
    seq: int = Field(
        ge=1,
        description="Position on its channel, from 1; a jump means missed events: re-read "
        "the state over REST, or resubscribe with `since` on a durable channel.",
    )


class TradeExecutionEvent(_Envelope):
    """An order was placed, filled (a resting order traded through) or triggered (a
    stop): the order as it stands after it. Placing an order announces it whatever its
    status, so a resting or rejected order comes with no fill."""

    type: Literal["trade_execution"]
    channel: Literal["trades"]
    data: OrderData


class OrderCancelledEvent(_Envelope):
    """An open order was cancelled (by its user, or because its agent was deleted)."""

    type: Literal["order_cancelled"]
    channel: Literal["trades"]
    data: OrderData


class PortfolioUpdateEvent(_Envelope):
    """An account changed: after an order's fills (`kind: "fill"`, with the position and
    cash of that order's pair) or at each periodic snapshot (`kind: "snapshot"`, the
    whole valuation)."""

    type: Literal["portfolio_update"]
    channel: Literal["portfolio"]
    data: Annotated[PortfolioSnapshotData | PortfolioFillData, Field(discriminator="kind")]


class MarketDataEvent(_Envelope):
    """A tick of a symbol: published for symbols someone listens to on `market:{SYMBOL}`
    or subscribed over REST (POST /api/v1/market/subscribe/{symbol})."""

    type: Literal["market_data"]
    channel: str = Field(pattern=MARKET_CHANNEL, examples=["market:BTC/USD"])
    data: TickerData

    @model_validator(mode="after")
    def _channel_names_the_symbol(self) -> Self:
        if self.channel != f"market:{self.data.symbol}":
            raise ValueError(f"a tick of {self.data.symbol} on {self.channel}")
        return self


class AgentDecisionEvent(_Envelope):
    """An agent decided: one per decision cycle that completes (scheduled, manual,
    override, or the executed vote of a coordination; members' views are logged, not
    announced)."""

    type: Literal["agent_decision"]
    channel: Literal["agents"]
    data: DecisionData


class AgentStatusEvent(_Envelope):
    """An agent's status changed."""

    type: Literal["agent_status"]
    channel: Literal["agents"]
    data: AgentStatusData


class AgentRunEvent(_Envelope):
    """One AG-UI event of an agent's decision cycle, live. Feed the `data` of each, in
    seq order, to an AG-UI client; skip to the next RUN_STARTED after joining mid-run
    or after a seq gap (the channel keeps no history)."""

    type: Literal["agent_run"]
    channel: str = Field(
        pattern=AGENT_CHANNEL, examples=["agent:0b7d9e4c-1f3a-4c2e-9d5b-6a7e8f9a0b1c"]
    )
    data: AgentRunData


class RiskAlertEvent(_Envelope):
    """Reserved for risk alerts on the durable `risk` channel: no service publishes one
    yet, so its data has no fixed shape."""

    type: Literal["risk_alert"]
    channel: Literal["risk"]
    data: dict[str, Any]


# --- control messages from the server -------------------------------------------------


class SubscribedMessage(_Strict):
    """A subscribe was accepted. With `since`, the stored events after it follow, then
    live ones, in seq order without repeats."""

    type: Literal["subscribed"]
    channel: str = Field(
        description="The channel's canonical name (symbols upper-cased, agent ids in "
        "standard form): events carry this name, which may differ from what was sent."
    )


class UnsubscribedMessage(_Strict):
    """An unsubscribe was done: nothing more comes from the channel."""

    type: Literal["unsubscribed"]
    channel: str = Field(description="The channel's canonical name.")


class ServerPongMessage(_Strict):
    """The answer to the client's ping."""

    type: Literal["pong"]


class ServerPingMessage(_Strict):
    """The heartbeat, every WS_HEARTBEAT_SECONDS (20 by default). A client that sends
    nothing, pongs included, for WS_HEARTBEAT_TIMEOUT_SECONDS (60 by default) is closed
    with 4000: answer with `{"type": "pong"}`."""

    type: Literal["ping"]


class ErrorMessage(_Strict):
    """A message was refused (not JSON, an unknown type or channel, a bad field, `since`
    on a channel without history, too many channels) or a replay could not be read.
    The connection stays open."""

    type: Literal["error"]
    message: str = Field(description="What was wrong, for a person to read.")


ServerMessage = Annotated[
    SubscribedMessage
    | UnsubscribedMessage
    | ServerPongMessage
    | ServerPingMessage
    | ErrorMessage
    | TradeExecutionEvent
    | OrderCancelledEvent
    | PortfolioUpdateEvent
    | MarketDataEvent
    | AgentDecisionEvent
    | AgentStatusEvent
    | AgentRunEvent
    | RiskAlertEvent,
    Field(discriminator="type"),
]
server_message_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)

# Each event type's envelope model.
EVENT_MODELS: dict[str, type[BaseModel]] = {
    EventType.TRADE_EXECUTION: TradeExecutionEvent,
    EventType.ORDER_CANCELLED: OrderCancelledEvent,
    EventType.PORTFOLIO_UPDATE: PortfolioUpdateEvent,
    EventType.MARKET_DATA: MarketDataEvent,
    EventType.AGENT_DECISION: AgentDecisionEvent,
    EventType.AGENT_STATUS: AgentStatusEvent,
    EventType.AGENT_RUN: AgentRunEvent,
    EventType.RISK_ALERT: RiskAlertEvent,
}


def parse_server_message(frame: str | bytes) -> ServerMessage:
    """The model of one frame the server sent; raises pydantic.ValidationError when the
    frame is not one of the protocol's messages exactly (unknown type or field, a wrong
    type, a decimal as a number, a tick on another symbol's channel)."""
    return server_message_adapter.validate_json(frame)


# --- the AsyncAPI 3.0 document --------------------------------------------------------

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_FORMAT = "application/schema+json;version=draft-07"
SCHEMA_REF = "#/components/schemas/{model}/schema"


@dataclass(frozen=True)
class _Message:
    key: str
    model: type[BaseModel]
    title: str
    summary: str

    @property
    def name(self) -> str:
        """The frame's `type`."""
        return str(get_args(self.model.model_fields["type"].annotation)[0])


@dataclass(frozen=True)
class _Channel:
    key: str
    address: str
    title: str
    description: str
    messages: tuple[_Message, ...] = ()
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


_SUBSCRIBE = _Message("subscribe", SubscribeMessage, "Subscribe", "Join a channel.")
_UNSUBSCRIBE = _Message("unsubscribe", UnsubscribeMessage, "Unsubscribe", "Leave a channel.")
_PING = _Message("ping", PingMessage, "Ping", "Is the server there? Answered with pong.")
_PONG = _Message("pong", PongMessage, "Pong", "The answer to the server's heartbeat.")
_SUBSCRIBED = _Message("subscribed", SubscribedMessage, "Subscribed", "A subscribe accepted.")
_UNSUBSCRIBED = _Message(
    "unsubscribed", UnsubscribedMessage, "Unsubscribed", "An unsubscribe done."
)
_SERVER_PONG = _Message("serverPong", ServerPongMessage, "Pong", "The answer to a ping.")
_HEARTBEAT = _Message("heartbeat", ServerPingMessage, "Heartbeat", "Answer with pong.")
_ERROR = _Message("error", ErrorMessage, "Error", "A message refused; the connection stays.")

_TRADE_EXECUTION = _Message(
    "tradeExecution", TradeExecutionEvent, "Trade execution", "An order placed or filled."
)
_ORDER_CANCELLED = _Message(
    "orderCancelled", OrderCancelledEvent, "Order cancelled", "An open order cancelled."
)
_PORTFOLIO_UPDATE = _Message(
    "portfolioUpdate",
    PortfolioUpdateEvent,
    "Portfolio update",
    "An account after fills, or its snapshot.",
)
_MARKET_DATA = _Message("marketData", MarketDataEvent, "Market data", "A tick of the symbol.")
_AGENT_DECISION = _Message(
    "agentDecision", AgentDecisionEvent, "Agent decision", "An agent decided."
)
_AGENT_STATUS = _Message(
    "agentStatus", AgentStatusEvent, "Agent status", "An agent's status changed."
)
_AGENT_RUN = _Message("agentRun", AgentRunEvent, "Agent run", "One AG-UI event of a cycle.")
_RISK_ALERT = _Message("riskAlert", RiskAlertEvent, "Risk alert", "Reserved: not published.")

_OWN = "Events of the connection's user only."
_DURABLE = (
    "Durable: subscribe with `since` (the last seq seen) to get the stored events after "
    "it (up to 1000) before the live ones."
)

CHANNELS: tuple[_Channel, ...] = (
    _Channel(
        "connection",
        "/ws",
        "The connection",
        "The WebSocket itself: connect to /ws and send JSON text frames. The event "
        "channels below are not separate sockets but names to subscribe to over this "
        "one (at most 200 per connection). The messages here are the connection's own.",
        (
            _SUBSCRIBE,
            _UNSUBSCRIBE,
            _PING,
            _PONG,
            _SUBSCRIBED,
            _UNSUBSCRIBED,
            _SERVER_PONG,
            _HEARTBEAT,
            _ERROR,
        ),
    ),
    _Channel(
        Channel.TRADES.value,
        Channel.TRADES.value,
        "Trades",
        f"Orders placed, filled, triggered and cancelled. {_OWN} {_DURABLE}",
        (_TRADE_EXECUTION, _ORDER_CANCELLED),
    ),
    _Channel(
        Channel.PORTFOLIO.value,
        Channel.PORTFOLIO.value,
        "Portfolio",
        f"Accounts after fills, and their periodic snapshots. {_OWN} {_DURABLE}",
        (_PORTFOLIO_UPDATE,),
    ),
    _Channel(
        Channel.AGENTS.value,
        Channel.AGENTS.value,
        "Agents",
        f"Agents' decisions and status changes. {_OWN} Not durable.",
        (_AGENT_DECISION, _AGENT_STATUS),
    ),
    _Channel(
        "agentRun",
        "agent:{agentId}",
        "An agent's live run",
        "An agent's decision cycles as they happen, as AG-UI events (camelCase). "
        f"{_OWN} Not durable. A cycle that starts while nobody listens here may not be "
        "streamed at all: subscribe before it starts.",
        (_AGENT_RUN,),
        {"agentId": {"description": "The agent's id (a UUID, any case)."}},
    ),
    _Channel(
        "market",
        "market:{symbol}",
        "A symbol's market data",
        "Every tick of one symbol. Public: every subscriber gets them. Not durable.",
        (_MARKET_DATA,),
        {
            "symbol": {
                "description": "The pair as BASE/QUOTE; the server upper-cases it and "
                "reads a dash as the slash, as REST paths do (market:btc-usd is "
                "market:BTC/USD, the name the `subscribed` answer gives).",
                "examples": ["BTC/USD"],
            }
        },
    ),
    _Channel(
        Channel.RISK.value,
        Channel.RISK.value,
        "Risk",
        f"Risk alerts. {_DURABLE} Nothing publishes on it yet.",
        (_RISK_ALERT,),
    ),
    _Channel(
        Channel.NOTIFICATIONS.value,
        Channel.NOTIFICATIONS.value,
        "Notifications",
        f"{_DURABLE} Nothing publishes on it yet.",
    ),
)


@dataclass(frozen=True)
class _Operation:
    key: str
    action: Literal["send", "receive"]
    channel: str
    messages: tuple[_Message, ...]
    summary: str
    reply: tuple[_Message, ...] = ()


OPERATIONS: tuple[_Operation, ...] = (
    _Operation(
        "receiveSubscribe",
        "receive",
        "connection",
        (_SUBSCRIBE,),
        "Cival subscribes the connection to a channel and answers subscribed, or error.",
        (_SUBSCRIBED, _ERROR),
    ),
    _Operation(
        "receiveUnsubscribe",
        "receive",
        "connection",
        (_UNSUBSCRIBE,),
        "Cival unsubscribes the connection from a channel and answers unsubscribed.",
        (_UNSUBSCRIBED, _ERROR),
    ),
    _Operation(
        "receivePing", "receive", "connection", (_PING,), "Cival answers pong.", (_SERVER_PONG,)
    ),
    _Operation(
        "sendHeartbeat",
        "send",
        "connection",
        (_HEARTBEAT,),
        "Cival pings every connection; the client answers pong.",
        (_PONG,),
    ),
    _Operation(
        "sendError",
        "send",
        "connection",
        (_ERROR,),
        "Cival refuses a message it cannot act on; the connection stays open.",
    ),
    _Operation(
        "sendTradeEvents",
        "send",
        Channel.TRADES.value,
        (_TRADE_EXECUTION, _ORDER_CANCELLED),
        "Cival announces the user's orders as they change.",
    ),
    _Operation(
        "sendPortfolioEvents",
        "send",
        Channel.PORTFOLIO.value,
        (_PORTFOLIO_UPDATE,),
        "Cival announces the user's accounts after fills and at each snapshot.",
    ),
    _Operation(
        "sendAgentEvents",
        "send",
        Channel.AGENTS.value,
        (_AGENT_DECISION, _AGENT_STATUS),
        "Cival announces the user's agents' decisions and status changes.",
    ),
    _Operation(
        "sendAgentRunEvents",
        "send",
        "agentRun",
        (_AGENT_RUN,),
        "Cival streams an agent's decision cycle as AG-UI events.",
    ),
    _Operation(
        "sendMarketData",
        "send",
        "market",
        (_MARKET_DATA,),
        "Cival publishes each tick of the symbol.",
    ),
    _Operation(
        "sendRiskAlerts",
        "send",
        Channel.RISK.value,
        (_RISK_ALERT,),
        "Reserved for risk alerts: nothing sends them yet.",
    ),
)

_DESCRIPTION = """\
Live events over one WebSocket, `/ws`. Send `{"type": "subscribe", "channel": "trades"}`
to join a channel (`"since": <seq>` on a durable one first replays what was missed),
`{"type": "unsubscribe", "channel": ...}` to leave it, `{"type": "ping"}` to check the
server. Every event comes in the envelope `{"type", "timestamp", "channel", "seq",
"data"}`; `seq` counts per channel from 1, so a gap means missed events. Decimals travel
as strings, times as ISO 8601 in UTC.

Operations are Cival's: `receive` is what the client sends, `send` what Cival sends.

Close codes: 1001 the server is stopping, 1008 the user was refused, 1013 the client
was too slow to keep up (reconnect and replay), 4000 the heartbeat went unanswered.

The JSON REST API (snapshots, history, orders) is described at /openapi.json.
"""


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(parts)}


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    """Every model's JSON Schema by name, its references into components.schemas."""
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for channel in CHANNELS:
        modes += [(m.model, "validation") for m in channel.messages]
    _, top = models_json_schema(list(dict.fromkeys(modes)), ref_template=SCHEMA_REF)
    definitions: dict[str, dict[str, Any]] = top["$defs"]
    return definitions


def asyncapi_document(*, host: str, protocol: Literal["ws", "wss"] = "ws") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of /ws on `host` (a host name, with its port if any)."""
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for channel in CHANNELS:
        entry: dict[str, Any] = {
            "address": channel.address,
            "title": channel.title,
            "description": channel.description,
            "messages": {m.key: _ref("components", "messages", m.key) for m in channel.messages},
        }
        if channel.parameters:
            entry["parameters"] = channel.parameters
        channels[channel.key] = entry
        for m in channel.messages:
            messages[m.key] = {
                "name": m.name,
                "title": m.title,
                "summary": m.summary,
                "description": inspect.cleandoc(m.model.__doc__ or m.summary),
                "contentType": "application/json",
                "payload": _ref("components", "schemas", m.model.__name__),
            }
    operations: dict[str, Any] = {}
    for op in OPERATIONS:
        entry = {
            "action": op.action,
            "channel": _ref("channels", op.channel),
            "summary": op.summary,
            "messages": [_ref("channels", op.channel, "messages", m.key) for m in op.messages],
        }
        if op.reply:
            entry["reply"] = {
                "channel": _ref("channels", op.channel),
                "messages": [_ref("channels", op.channel, "messages", m.key) for m in op.reply],
            }
        operations[op.key] = entry
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "Cival live events", "version": __version__, "description": _DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "cival": {
                "host": host,
                "protocol": protocol,
                "title": "This Cival server",
                "description": "Connect to /ws on it.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {
                name: {"schemaFormat": SCHEMA_FORMAT, "schema": schema}
                for name, schema in _schemas().items()
            },
            "messages": messages,
        },
    }
