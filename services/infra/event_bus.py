"""The event bus: services publish after commit, subscribers (the WebSocket hub) fan out.

Two implementations behind one interface:

- `InProcessEventBus`: sequence numbers and a bounded replay history in memory.
- `RedisEventBus`: one Lua script assigns the per-channel seq, publishes, and stores
  durable events, atomically, so every process shares one sequence and one history; a
  supervised subscriber delivers what any process published to this process's handlers.
  While Redis is down, publishing falls back to local delivery (logged and counted;
  other processes miss those events, and they are not in the replay history) and the
  bus reports degraded; when Redis returns the subscriber resumes and the shared counter
  is moved past the seqs handed out locally, so clients see a gap rather than a repeat.

Handlers are plain functions called in the delivering task: they must not block (hand
work to a queue). A handler that raises is logged and counted; the others still run.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask, wait_event
from models.events import EncodedEvent, Event, encode_event, is_durable, normalize_channel
from services.infra.redis import RedisService

log = structlog.get_logger(__name__)

EventHandler = Callable[[Event], None]
# Whether a handler wants a channel's events right now (see EventBus.listening).
ChannelFilter = Callable[[str], bool]


class ReplayUnavailableError(RuntimeError):
    """The history cannot be read right now (Redis is down)."""


class EventBus(ABC):
    """Publish events by channel; subscribe to all of them; replay durable channels."""

    def __init__(self) -> None:
        self._handlers: dict[int, EventHandler] = {}
        self._wants: dict[int, ChannelFilter] = {}
        self._handler_ids = itertools.count()
        self.published = 0
        self.delivered = 0
        self.handler_errors = 0

    @abstractmethod
    async def publish(
        self,
        channel: str,
        event_type: str,
        data: Mapping[str, Any],
        *,
        user_id: uuid.UUID | None = None,
    ) -> int:
        """Publish on a channel (raises InvalidChannelError on a bad name); returns the seq."""

    @abstractmethod
    async def replay(self, channel: str, after_seq: int, limit: int) -> list[Event]:
        """Stored events of a durable channel with seq > after_seq, oldest first, at most limit.

        Raises ValueError for a channel that keeps no history and ReplayUnavailableError
        when the history cannot be read.
        """

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def health(self) -> ServiceHealth: ...

    def subscribe(
        self, handler: EventHandler, *, wants: ChannelFilter | None = None
    ) -> Callable[[], None]:
        """Deliver every event to `handler`; returns the function that unsubscribes it.

        `wants`, when given, tells `listening` which channels the handler cares about
        at the moment (it still receives every event and filters them itself)."""
        handler_id = next(self._handler_ids)
        self._handlers[handler_id] = handler
        if wants is not None:
            self._wants[handler_id] = wants

        def unsubscribe() -> None:
            self._handlers.pop(handler_id, None)
            self._wants.pop(handler_id, None)

        return unsubscribe

    def listening(self, channel: str) -> bool:
        """Whether an event published on `channel` now would reach anyone, so a publisher
        can skip building a stream of events nobody receives. True while any handler
        takes every channel (one subscribed without `wants`)."""
        for handler_id in self._handlers:
            wants = self._wants.get(handler_id)
            if wants is None or wants(channel):
                return True
        return False

    def _deliver(self, event: Event) -> None:
        self.delivered += 1
        for handler in list(self._handlers.values()):
            try:
                handler(event)
            except Exception:
                self.handler_errors += 1
                log.exception("event_handler_failed", channel=event.channel, seq=event.seq)

    def _counters(self) -> dict[str, int]:
        return {
            "published": self.published,
            "delivered": self.delivered,
            "handler_errors": self.handler_errors,
            "subscribers": len(self._handlers),
        }


def _check_replay_args(channel: str, after_seq: int, limit: int) -> str:
    channel = normalize_channel(channel)
    if not is_durable(channel):
        raise ValueError(f"channel {channel!r} keeps no history to replay")
    if after_seq < 0 or limit < 1:
        raise ValueError("after_seq must be >= 0 and limit >= 1")
    return channel


class InProcessEventBus(EventBus):
    def __init__(self, *, history: int = 1000) -> None:
        super().__init__()
        if history < 1:
            raise ValueError("history must be >= 1")
        self._history_size = history
        self._seq: dict[str, int] = {}
        self._history: dict[str, deque[Event]] = {}

    async def publish(
        self,
        channel: str,
        event_type: str,
        data: Mapping[str, Any],
        *,
        user_id: uuid.UUID | None = None,
    ) -> int:
        """Numbers the event on its channel, keeps it if durable, delivers it in this task."""
        encoded = encode_event(channel, event_type, data, user_id=user_id)
        seq = self._seq.get(encoded.channel, 0) + 1
        self._seq[encoded.channel] = seq
        event = encoded.with_seq(seq)
        if is_durable(event.channel):
            ring = self._history.get(event.channel)
            if ring is None:
                ring = self._history[event.channel] = deque(maxlen=self._history_size)
            ring.append(event)
        self.published += 1
        self._deliver(event)
        return seq

    async def replay(self, channel: str, after_seq: int, limit: int) -> list[Event]:
        channel = _check_replay_args(channel, after_seq, limit)
        ring = self._history.get(channel)
        if not ring:
            return []
        # Seqs in the ring are consecutive, so the position follows from the first one.
        start = max(0, after_seq + 1 - ring[0].seq)
        return list(itertools.islice(ring, start, start + limit))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy("in-process", **self._counters())


# KEYS: seq hash, history zset.  ARGV: channel field, pubsub channel, frame head (after
# the seq), envelope head (up to the seq), envelope tail, durable flag, history size.
# Wire frame: "<seq> <type> <user|->\n<envelope>", also what the history stores.
_PUBLISH_LUA = """
local seq = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local s = string.format('%d', seq)
local frame = s .. ARGV[3] .. ARGV[4] .. s .. ARGV[5]
redis.call('PUBLISH', ARGV[2], frame)
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[2], seq, frame)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[7]) + 1))
end
return seq
"""

# Moves each channel's shared counter up to at least the given seq (never down).
_RAISE_SEQ_LUA = """
for i = 1, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if current < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _parse_frame(channel: str, frame: bytes) -> Event:
    header, _, envelope = frame.partition(b"\n")
    seq, event_type, user = header.split(b" ")
    return Event(
        channel=channel,
        seq=int(seq),
        type=event_type.decode(),
        payload=envelope,
        user_id=None if user == b"-" else uuid.UUID(user.decode()),
    )


class RedisEventBus(EventBus):
    def __init__(self, redis: RedisService, *, history: int = 10000) -> None:
        super().__init__()
        if history < 1:
            raise ValueError("history must be >= 1")
        self._redis = redis
        self._history_size = history
        self._seq_key = redis.key("events:seq")
        self._channel_prefix = redis.key("events:ch:")
        self._pattern = _glob_escape(self._channel_prefix) + "*"
        self._publish_script: AsyncScript | None = None
        self._raise_seq_script: AsyncScript | None = None
        self._subscribed = asyncio.Event()
        self._redis_up = asyncio.Event()
        self._remove_listener: Callable[[], None] | None = None
        self._subscriber = SupervisedTask(
            "event_bus_subscriber", self._listen, max_backoff=redis.health_interval_seconds
        )
        # Last seq seen per channel, the seqs handed out locally while Redis was down
        # (pushed into Redis on recovery), and seqs delivered locally while the subscriber
        # was reconnecting (so the same event arriving over Redis is not delivered twice).
        self._last_seq: dict[str, int] = {}
        self._local_max: dict[str, int] = {}
        self._delivered_early: set[tuple[str, int]] = set()
        self.fallback_publishes = 0
        self.subscriber_errors = 0

    async def start(self) -> None:
        """Start the subscriber; waits (bounded) for the subscription when Redis is up."""
        self._publish_script = self._redis.client.register_script(_PUBLISH_LUA)
        self._raise_seq_script = self._redis.client.register_script(_RAISE_SEQ_LUA)
        self._remove_listener = self._redis.on_state_change(self._on_redis_state)
        if self._redis.available:
            self._redis_up.set()
        self._subscriber.start()
        if self._redis.available:
            await self.wait_subscribed(within=self._redis.socket_timeout_seconds * 3)

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        await self._subscriber.stop()
        self._subscribed.clear()

    async def health(self) -> ServiceHealth:
        data = {
            **self._counters(),
            "fallback_publishes": self.fallback_publishes,
            "subscriber_errors": self.subscriber_errors,
            "subscriber_crashes": self._subscriber.crashes,
        }
        if not self._redis.available:
            return ServiceHealth.degraded(
                f"redis unavailable, delivering in this process only: {self._redis.reason}",
                **data,
            )
        if not self._subscribed.is_set():
            return ServiceHealth.degraded("redis subscriber reconnecting", **data)
        return ServiceHealth.healthy("redis pub/sub", **data)

    def listening(self, channel: str) -> bool:  # noqa: ARG002 - same answer for all
        """Always True: subscribers in other processes are not known here."""
        return True

    @property
    def subscribed(self) -> bool:
        """Whether events published by any process currently reach this one."""
        return self._subscribed.is_set()

    async def wait_subscribed(self, *, within: float) -> bool:
        """Wait until the subscriber is listening; False if it is not within `within` seconds."""
        return await wait_event(self._subscribed, within)

    async def publish(
        self,
        channel: str,
        event_type: str,
        data: Mapping[str, Any],
        *,
        user_id: uuid.UUID | None = None,
    ) -> int:
        """Numbers and publishes through Redis; delivers in-process only while Redis is down."""
        encoded = encode_event(channel, event_type, data, user_id=user_id)
        if self._redis.available and self._publish_script is not None:
            if not self._subscribed.is_set():
                await self.wait_subscribed(within=self._redis.socket_timeout_seconds)
            try:
                seq = await self._publish_script(
                    keys=[self._seq_key, self._redis.key(f"events:log:{encoded.channel}")],
                    args=self._publish_args(encoded),
                )
            except (RedisError, OSError) as e:
                log.warning(
                    "event_publish_fallback",
                    channel=encoded.channel,
                    error=f"{type(e).__name__}: {e}",
                )
                self._redis.report_error(e)
            else:
                self.published += 1
                if not self._subscribed.is_set():
                    # Our own subscriber may not hear this one: deliver it here, once.
                    event = encoded.with_seq(int(seq))
                    self._delivered_early.add((event.channel, event.seq))
                    self._deliver_local(event)
                return int(seq)
        return self._publish_locally(encoded)

    async def replay(self, channel: str, after_seq: int, limit: int) -> list[Event]:
        channel = _check_replay_args(channel, after_seq, limit)
        if not self._redis.available:
            raise ReplayUnavailableError(f"redis unavailable: {self._redis.reason}")
        try:
            frames: list[bytes] = await self._redis.client.zrangebyscore(  # type: ignore[assignment]
                self._redis.key(f"events:log:{channel}"),
                f"({after_seq}",
                "+inf",
                start=0,
                num=min(limit, self._history_size),
            )
        except (RedisError, OSError) as e:
            self._redis.report_error(e)
            raise ReplayUnavailableError(f"{type(e).__name__}: {e}") from e
        return [_parse_frame(channel, frame) for frame in frames]

    def _publish_args(self, encoded: EncodedEvent) -> list[str | bytes | int]:
        user = encoded.user_id.hex if encoded.user_id else "-"
        return [
            encoded.channel,
            self._channel_prefix + encoded.channel,
            f" {encoded.type} {user}\n".encode(),
            encoded.head,
            encoded.tail,
            "1" if is_durable(encoded.channel) else "0",
            self._history_size,
        ]

    def _publish_locally(self, encoded: EncodedEvent) -> int:
        seq = self._last_seq.get(encoded.channel, 0) + 1
        self._local_max[encoded.channel] = seq
        self.fallback_publishes += 1
        self.published += 1
        self._deliver_local(encoded.with_seq(seq))
        return seq

    def _deliver_local(self, event: Event) -> None:
        self._last_seq[event.channel] = max(self._last_seq.get(event.channel, 0), event.seq)
        self._deliver(event)

    def _on_redis_state(self, available: bool) -> None:
        if available:
            self._redis_up.set()
        else:
            self._redis_up.clear()
            self._subscribed.clear()

    async def _listen(self) -> None:
        while True:
            await self._redis_up.wait()
            try:
                await self._consume()
            except (RedisError, OSError) as e:
                self.subscriber_errors += 1
                log.warning("event_bus_subscriber_lost", error=f"{type(e).__name__}: {e}")
                # Let Redis's state change first (we are still marked subscribed until
                # then), so health blames Redis for an outage rather than the bus.
                await self._redis.check_now()
            finally:
                self._subscribed.clear()
            # Retry once the monitor sees Redis back, or after one interval if it never
            # saw it go (a blip); never in a tight loop.
            self._redis_up.clear()
            came_back = await wait_event(self._redis_up, self._redis.health_interval_seconds)
            if not came_back and self._redis.available:
                self._redis_up.set()

    async def _consume(self) -> None:
        pubsub = self._redis.client.pubsub()
        try:
            await pubsub.psubscribe(self._pattern)
            while self._redis.available:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "psubscribe":
                    # redis-py resubscribes by itself after a reconnect; each confirmation
                    # means events from every process reach us again.
                    await self._raise_shared_seqs()
                    self._subscribed.set()
                    log.info("event_bus_subscribed", pattern=self._pattern)
                elif message["type"] == "pmessage":
                    self._on_frame(message["channel"], message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _on_frame(self, redis_channel: bytes, frame: bytes) -> None:
        channel = redis_channel.decode()[len(self._channel_prefix) :]
        try:
            event = _parse_frame(channel, frame)
        except ValueError:
            log.warning("event_frame_malformed", channel=channel)
            return
        if self._delivered_early and self._was_delivered_early(event):
            return
        self._deliver_local(event)

    def _was_delivered_early(self, event: Event) -> bool:
        key = (event.channel, event.seq)
        if key in self._delivered_early:
            self._delivered_early.discard(key)
            return True
        # A channel's events arrive in seq order: an earlier one not seen by now never will.
        self._delivered_early = {
            (c, s) for c, s in self._delivered_early if c != event.channel or s > event.seq
        }
        return False

    async def _raise_shared_seqs(self) -> None:
        if not self._local_max or self._raise_seq_script is None:
            return
        args: list[str | int] = []
        for channel, seq in self._local_max.items():
            args += [channel, seq]
        await self._raise_seq_script(keys=[self._seq_key], args=args)
        log.info("event_seqs_raised", channels=len(self._local_max))
        self._local_max.clear()
