"""Events: one envelope everywhere, channel names, and the WebSocket client protocol.

Every event travels as `{"type", "timestamp", "channel", "seq", "data"}`, serialized by
orjson exactly once (Decimals as plain strings, datetimes ISO-8601 in UTC). `seq` counts
per channel from 1, so a client that sees a jump knows it missed events and re-reads
the state over REST (or asks for a replay on a durable channel).

Channels: `portfolio`, `trades`, `agents`, `risk`, `notifications`, `market:{SYMBOL}`
(symbol upper-cased, e.g. `market:BTC/USDT`) and `agent:{id}`.

The client's messages are here; what the server sends, each event's data included, is
modelled in models/ws_protocol.py; models/asyncapi.py builds the AsyncAPI document.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, Field, TypeAdapter

from models.base import AppModel, InputModel, decimal_to_str


class EventType(StrEnum):
    """Every event type published (models/ws_protocol.py models each one's data)."""

    PORTFOLIO_UPDATE = "portfolio_update"
    AGENT_DECISION = "agent_decision"
    MARKET_DATA = "market_data"
    TRADE_EXECUTION = "trade_execution"
    RISK_ALERT = "risk_alert"
    AGENT_STATUS = "agent_status"
    ORDER_CANCELLED = "order_cancelled"
    AGENT_RUN = "agent_run"
    STRATEGY_SIGNAL = "strategy_signal"
    BACKTEST_PROGRESS = "backtest_progress"


class Channel(StrEnum):
    """The fixed channels; `market_channel()` and `agent_channel()` build the others."""

    PORTFOLIO = "portfolio"
    TRADES = "trades"
    AGENTS = "agents"
    RISK = "risk"
    NOTIFICATIONS = "notifications"
    SIGNALS = "signals"
    BACKTESTS = "backtests"


# Events a user must not miss are also stored, so a reconnecting client can replay them.
DURABLE_CHANNELS: frozenset[str] = frozenset(
    {Channel.TRADES, Channel.RISK, Channel.NOTIFICATIONS, Channel.PORTFOLIO}
)
FIXED_CHANNELS: frozenset[str] = frozenset(c.value for c in Channel)

# No glob characters (* ? [ ]) and no spaces may reach a channel name: the Redis bus
# pattern-subscribes to them and frames them with spaces.
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}(?:[/_.-][A-Z0-9]{1,20})?")
_AGENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class InvalidChannelError(ValueError):
    """The name is not one of the channels (the message says which shapes are valid)."""


def market_channel(symbol: str) -> str:
    return normalize_channel(f"market:{symbol}")


def agent_channel(agent_id: uuid.UUID | str) -> str:
    return normalize_channel(f"agent:{agent_id}")


def normalize_channel(name: str) -> str:
    """The canonical channel name (symbols upper-cased, UUIDs in standard form), or raises."""
    if name in FIXED_CHANNELS:
        return name
    kind, sep, rest = name.partition(":")
    if sep and kind == "market":
        # BTC-USD is REST's way of writing BTC/USD in a path; here it names the same pair.
        symbol = rest.upper().replace("-", "/")
        if _SYMBOL.fullmatch(symbol):
            return f"market:{symbol}"
    elif sep and kind == "agent" and _AGENT_ID.fullmatch(rest):
        try:
            return f"agent:{uuid.UUID(rest)}"
        except ValueError:
            return f"agent:{rest}"
    raise InvalidChannelError(
        f"unknown channel {name[:80]!r}: expected one of {', '.join(sorted(FIXED_CHANNELS))}, "
        "market:{SYMBOL} or agent:{id}"
    )


def is_durable(channel: str) -> bool:
    return channel in DURABLE_CHANNELS


def validate_event_type(event_type: str) -> str:
    if not _EVENT_TYPE.fullmatch(event_type):
        raise ValueError(f"event type must be snake_case, got {event_type[:80]!r}")
    return str(event_type)


def _iso_utc(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_to_str(value)
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot serialize {type(value).__name__} in an event")


# Datetimes pass through `_default` so an aware non-UTC time is converted, not kept as is.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """JSON bytes the way events carry them: Decimal as string, datetimes in UTC."""
    return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)


@dataclass(frozen=True)
class Event:
    """A published event: where it went, its number there, and its serialized envelope."""

    channel: str
    seq: int
    type: str
    payload: bytes
    user_id: uuid.UUID | None = None

    @cached_property
    def text(self) -> str:
        """The envelope as text, decoded once however many clients receive it."""
        return self.payload.decode()

    def envelope(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.payload)
        return value


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An envelope serialized up to its seq: `head + seq + tail` is the whole JSON.

    Keeping the seq out lets whoever assigns it (a counter here, a Lua script in Redis)
    finish the envelope without serializing the data again.
    """

    channel: str
    type: str
    user_id: uuid.UUID | None
    head: bytes
    tail: bytes

    def with_seq(self, seq: int) -> Event:
        payload = b"%b%d%b" % (self.head, seq, self.tail)
        return Event(self.channel, seq, self.type, payload, self.user_id)


def encode_event(
    channel: str,
    event_type: str,
    data: Mapping[str, Any],
    *,
    user_id: uuid.UUID | None = None,
    timestamp: datetime | None = None,
) -> EncodedEvent:
    """Serialize an event once; raises InvalidChannelError or ValueError on a bad name."""
    channel = normalize_channel(channel)
    event_type = validate_event_type(event_type)
    head = dumps(
        {
            "type": event_type,
            "timestamp": timestamp or datetime.now(UTC),
            "channel": channel,
        }
    )
    return EncodedEvent(
        channel=channel,
        type=event_type,
        user_id=user_id,
        head=head[:-1] + b',"seq":',
        tail=b',"data":' + dumps(dict(data)) + b"}",
    )


class EventEnvelope(AppModel):
    """What a WebSocket client receives for every event (documentation and clients)."""

    type: str
    timestamp: datetime
    channel: str
    seq: int = Field(ge=1, description="Per-channel sequence; a jump means missed events.")
    data: dict[str, Any]


ChannelName = Annotated[
    str,
    AfterValidator(normalize_channel),
    Field(
        description="portfolio, trades, agents, risk, notifications, market:{SYMBOL} or "
        "agent:{id}; the server answers with its canonical form.",
        examples=["trades", "market:BTC/USD"],
    ),
]


class SubscribeMessage(InputModel):
    """Join a channel: answered with `subscribed` (or `error`)."""

    type: Literal["subscribe"]
    channel: ChannelName
    since: int | None = Field(
        default=None,
        ge=0,
        description="Replay the durable channel's events after this seq before live ones.",
    )


class UnsubscribeMessage(InputModel):
    """Leave a channel: answered with `unsubscribed`."""

    type: Literal["unsubscribe"]
    channel: ChannelName


class PingMessage(InputModel):
    """Is the server there? Answered with `{"type": "pong"}`."""

    type: Literal["ping"]


class PongMessage(InputModel):
    """The client's answer to the server's heartbeat `{"type": "ping"}`."""

    type: Literal["pong"]


ClientMessage = Annotated[
    SubscribeMessage | UnsubscribeMessage | PingMessage | PongMessage,
    Field(discriminator="type"),
]
client_message_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
