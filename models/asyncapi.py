"""The AsyncAPI 3.0 document of the /ws protocol, served at GET /asyncapi.json.

Its channels, messages and operations are tables here (`CHANNELS`, `OPERATIONS`); the
messages' payloads are the models of models/ws_protocol.py (and the client's messages of
models/events.py). Its `components.schemas` are those models' JSON Schemas as pydantic
writes them, each wrapped as a Multi Format Schema Object declaring JSON Schema draft-07
(which these schemas stay within; tests/api/test_asyncapi.py checks).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, get_args

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from core.version import __version__
from models.events import (
    Channel,
    PingMessage,
    PongMessage,
    SubscribeMessage,
    UnsubscribeMessage,
)
from models.ws_protocol import (
    AgentDecisionEvent,
    AgentRunEvent,
    AgentStatusEvent,
    BacktestProgressEvent,
    ErrorMessage,
    MarketDataEvent,
    OrderCancelledEvent,
    PortfolioUpdateEvent,
    RiskAlertEvent,
    ServerPingMessage,
    ServerPongMessage,
    StrategySignalEvent,
    SubscribedMessage,
    TradeExecutionEvent,
    UnsubscribedMessage,
)

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
_RISK_ALERT = _Message(
    "riskAlert",
    RiskAlertEvent,
    "Risk alert",
    "A limit approached or breached, a VaR or concentration alert, or a kill switch.",
)

_STRATEGY_SIGNAL = _Message(
    "strategySignal",
    StrategySignalEvent,
    "Strategy signal",
    "An active strategy read a closed candle of one of its symbols.",
)
_BACKTEST_PROGRESS = _Message(
    "backtestProgress",
    BacktestProgressEvent,
    "Backtest progress",
    "A background backtest started, moved on or finished.",
)

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
        Channel.SIGNALS.value,
        Channel.SIGNALS.value,
        "Signals",
        "Your active strategies' signals, one per closed candle of their symbols and "
        f"timeframe. {_OWN} Not durable: GET /api/v1/strategies/{{id}}/signals has them all.",
        (_STRATEGY_SIGNAL,),
    ),
    _Channel(
        Channel.BACKTESTS.value,
        Channel.BACKTESTS.value,
        "Backtests",
        "Your background backtests' progress and ends. "
        f"{_OWN} Not durable: GET /api/v1/backtests/{{id}} has the latest state.",
        (_BACKTEST_PROGRESS,),
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
        "Cival publishes each risk alert of the user: limits approached or breached, VaR "
        "and concentration alerts, kill switches.",
    ),
    _Operation(
        "sendStrategySignals",
        "send",
        Channel.SIGNALS.value,
        (_STRATEGY_SIGNAL,),
        "Cival publishes each signal of the user's active strategies.",
    ),
    _Operation(
        "sendBacktestProgress",
        "send",
        Channel.BACKTESTS.value,
        (_BACKTEST_PROGRESS,),
        "Cival announces the user's background backtests as they start, progress and end.",
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
