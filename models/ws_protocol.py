"""The /ws protocol as models: what the server sends, and a validator for it.

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
    risk_alert        risk             services/risk/alerts.py: a limit approached or
                                       breached, a VaR or concentration alert, a kill switch
    strategy_signal   signals          services/strategies/live.py: a closed candle read
    backtest_progress backtests        services/backtests/jobs.py: a background run moved

`parse_server_message(frame)` validates one received frame against the model its
`type` names. The models refuse unknown fields and coerce nothing (a decimal must be a
decimal string, a time an ISO-8601 string, an id a UUID string), so a payload that
drifts from what is documented here fails to parse. Two exceptions: an AG-UI event is
closed at its top level only (what it nests is ag-ui-protocol's own, open models), and
a risk alert's own `data` (its figures) differs by alert type. Validate JSON text with them
(`model_validate_json`), not Python objects: strict mode takes a UUID or a time only
as a JSON string.

The AsyncAPI 3.0 document of the protocol, served at GET /asyncapi.json, is built
from these models in models/asyncapi.py (`asyncapi_document()`).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

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

from models.base import decimal_to_str
from models.enums import (
    ActionTaken,
    AgentStatus,
    BacktestKind,
    BacktestStatus,
    DecisionStatus,
    DecisionTrigger,
    DecisionType,
    Liquidity,
    OrderSide,
    OrderStatus,
    OrderType,
    SignalAction,
    StopTrigger,
    Timeframe,
    TimeInForce,
)
from models.events import EventType
from models.risk import AlertType, Severity
from models.ws_agui import AgentRunData

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
    stop_trigger: StopTrigger = Field(description="What triggers a stop: last, bid or ask.")
    post_only: bool = Field(description="A limit that only ever fills as maker.")
    expires_at: datetime | None = Field(description="When a DAY or GTD order expires.")
    notional: PlainDecimal | None = Field(
        description="The cash amount a notional market order asked for; else null."
    )
    replaces_order_id: uuid.UUID | None = Field(
        description="The order this one replaced (PATCH); null for a new order."
    )
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


class PortfolioResetData(_Strict):
    """A paper account returned to its first state (POST .../reset,
    services/paper_trading/lifecycle.py): the client's view of its positions, orders,
    fills and equity curve is stale and is to be read again."""

    kind: Literal["reset"] = Field(description="The account was reset.")
    account_id: uuid.UUID = Field(description="The account reset.")
    cash: PlainDecimal = Field(
        description="Its cash after the reset (the initial balance, in the base currency)."
    )
    cancelled_orders: int = Field(description="Open orders cancelled by the reset.", ge=0)
    deleted_orders: int = Field(description="Orders deleted (all of the account's).", ge=0)
    deleted_fills: int = Field(description="Fills deleted (all of the account's).", ge=0)
    reset_at: datetime = Field(description="When it was reset (UTC).")


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


class ModelRefData(_Strict):
    """A provider and one of its models."""

    provider: str = Field(description="The provider, as agents name it.", examples=["openai"])
    model: str = Field(description="The model.", examples=["gpt-4o-mini"])


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
    cost: PlainDecimal | None = Field(
        description="What the model call cost, in USD; null when unknown (a model without a price)."
    )
    answered_by: ModelRefData | None = Field(
        description="The provider and model that answered (a fallback's when one did); "
        "null when no model was asked."
    )
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
    cash of that order's pair), at each periodic snapshot (`kind: "snapshot"`, the
    whole valuation), or when it was reset (`kind: "reset"`)."""

    type: Literal["portfolio_update"]
    channel: Literal["portfolio"]
    data: Annotated[
        PortfolioSnapshotData | PortfolioFillData | PortfolioResetData,
        Field(discriminator="kind"),
    ]


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


class RiskAlertData(_Strict):
    """A risk alert as GET /api/v1/risk/alerts lists it (docs/risk.md)."""

    id: uuid.UUID = Field(description="The alert; acknowledge it by this id.")
    alert_type: AlertType = Field(description="What it is about.")
    severity: Severity = Field(description="low, medium, high or critical.")
    message: str = Field(description="What happened, with the numbers.")
    data: dict[str, Any] = Field(
        description="Its figures: for a limit, the limit and its current, projected and "
        "utilisation; for a kill switch, what engaging it did."
    )
    account_id: uuid.UUID | None = Field(description="The account it is about, if one.")
    limit_id: uuid.UUID | None = Field(description="The limit it is about, if one.")
    acknowledged: bool = Field(description="False when pushed.")
    acknowledged_at: datetime | None = Field(description="Null when pushed.")
    created_at: datetime = Field(description="When it was raised.")


class RiskAlertEvent(_Envelope):
    """A risk alert, on the durable `risk` channel: a reconnecting client replays the
    ones it missed with `since`."""

    type: Literal["risk_alert"]
    channel: Literal["risk"]
    data: RiskAlertData


class SignalData(_Strict):
    """A strategy's signal as GET /api/v1/strategies/{id}/signals lists it."""

    id: uuid.UUID
    strategy_id: uuid.UUID | None = Field(description="The strategy that read it.")
    agent_id: uuid.UUID | None = Field(description="Null for a strategy's own signal.")
    symbol: str
    timeframe: Timeframe
    candle_open_time: datetime = Field(description="The closed candle it was read from.")
    action: SignalAction = Field(description="buy: it enters; sell: it leaves; hold.")
    strength: PlainDecimal = Field(description="0-100.")
    confidence: PlainDecimal = Field(description="0-1.")
    price: PlainDecimal = Field(description="The candle's close.")
    reasoning: str | None
    metadata: dict[str, Any] = Field(
        description="The wanted position, the strategy's type and its indicators."
    )
    created_at: datetime


class StrategySignalEvent(_Envelope):
    """An active strategy read a closed candle of one of its symbols."""

    type: Literal["strategy_signal"]
    channel: Literal["signals"]
    data: SignalData


class BacktestProgressData(_Strict):
    """A backtest run as GET /api/v1/backtests/{id} shows it, without its result."""

    id: uuid.UUID = Field(description="The run.")
    kind: BacktestKind
    strategy_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    status: BacktestStatus
    stage: str | None = Field(description="What it is doing: reading, computing, storing.")
    progress: float = Field(ge=0, le=1, description="0 to 1.")
    error: str | None = Field(description="Why it failed or was cancelled.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BacktestProgressEvent(_Envelope):
    """A background backtest moved on: started, progressed, or finished (succeeded,
    failed, cancelled). Its result is read over REST."""

    type: Literal["backtest_progress"]
    channel: Literal["backtests"]
    data: BacktestProgressData


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
    | RiskAlertEvent
    | StrategySignalEvent
    | BacktestProgressEvent,
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
    EventType.STRATEGY_SIGNAL: StrategySignalEvent,
    EventType.BACKTEST_PROGRESS: BacktestProgressEvent,
}


def parse_server_message(frame: str | bytes) -> ServerMessage:
    """The model of one frame the server sent; raises pydantic.ValidationError when the
    frame is not one of the protocol's messages exactly (unknown type or field, a wrong
    type, a decimal as a number, a tick on another symbol's channel)."""
    return server_message_adapter.validate_json(frame)
