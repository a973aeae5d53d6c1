"""WebSocket fan-out: events from the bus to the clients subscribed to their channel.

Each connection has a bounded queue and one sender task, the only writer to its socket.
Fan-out only puts the event's already-serialized text on the subscribers' queues, so a
slow client never slows the others: when its queue is full it is dropped with close code
1013 (Try Again Later) and can reconnect and replay. The server sends `{"type":"ping"}`
every `heartbeat_seconds`; a client that has sent nothing (its `pong`s included) for
`heartbeat_timeout_seconds` is dropped with 4000. Stopping the hub closes every client
with 1001 (Going Away).

Events published with a `user_id` reach only that user's connections; events without
one reach every subscriber of the channel.

The socket is anything with `send_text` and `close` (Starlette's WebSocket is one), so
this service never imports the web framework; the router owns reading.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import structlog

from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask
from models.events import Event, dumps, is_durable, normalize_channel
from services.infra.event_bus import EventBus, ReplayUnavailableError

log = structlog.get_logger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 1013
CLOSE_HEARTBEAT_TIMEOUT = 4000

_PING = dumps({"type": "ping"}).decode()


class ClientSocket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Connection:
    """One client: its channels, its outgoing queue, when it was last heard from."""

    def __init__(
        self, conn_id: int, socket: ClientSocket, user_id: uuid.UUID | None, queue_size: int
    ) -> None:
        self.id = conn_id
        self.socket = socket
        self.user_id = user_id
        self.channels: set[str] = set()
        self.last_seen = time.monotonic()
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        # Live events held back while a replay of the channel is read, so they follow it.
        self._held: dict[str, list[Event]] = {}
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        return self.close_code is not None or self.closed.is_set()

    def touch(self) -> None:
        """The client said something: it is alive."""
        self.last_seen = time.monotonic()

    def sees(self, event: Event) -> bool:
        return event.user_id is None or event.user_id == self.user_id


class WebSocketHub:
    def __init__(
        self,
        bus: EventBus,
        *,
        queue_size: int = 1000,
        heartbeat_seconds: float = 20.0,
        heartbeat_timeout_seconds: float = 60.0,
        replay_limit: int = 1000,
        max_channels: int = 200,
        close_timeout_seconds: float = 5.0,
    ) -> None:
        if queue_size < 1 or replay_limit < 1:
            raise ValueError("queue_size and replay_limit must be >= 1")
        if heartbeat_timeout_seconds <= heartbeat_seconds:
            raise ValueError("heartbeat_timeout_seconds must exceed heartbeat_seconds")
        self._bus = bus
        self._queue_size = queue_size
        self._heartbeat_seconds = heartbeat_seconds
        self._heartbeat_timeout = heartbeat_timeout_seconds
        self._replay_limit = replay_limit
        self._max_channels = max_channels
        self._close_timeout = close_timeout_seconds
        self._connections: dict[int, Connection] = {}
        self._by_channel: dict[str, set[Connection]] = {}
        self._ids = itertools.count(1)
        self._unsubscribe: Callable[[], None] | None = None
        self._heartbeat = SupervisedTask("websocket_heartbeat", self._heartbeat_loop)
        self.dropped_slow = 0
        self.dropped_heartbeat = 0
        self.frames_queued = 0

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        self._unsubscribe = self._bus.subscribe(self._on_event, wants=self._by_channel.__contains__)
        self._heartbeat.start()

    async def stop(self) -> None:
        """Stop receiving events and close every client with 1001."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._heartbeat.stop()
        for conn in list(self._connections.values()):
            self._drop(conn, CLOSE_GOING_AWAY, "server shutting down")
        closers = [c._closer for c in self._connections.values() if c._closer is not None]
        if closers:
            await asyncio.wait(closers, timeout=self._close_timeout)

    async def health(self) -> ServiceHealth:
        data = {
            "connections": len(self._connections),
            "subscriptions": sum(len(c.channels) for c in self._connections.values()),
            "dropped": self.dropped_slow + self.dropped_heartbeat,
            "dropped_slow": self.dropped_slow,
            "dropped_heartbeat": self.dropped_heartbeat,
            "frames_queued": self.frames_queued,
            "heartbeat_crashes": self._heartbeat.crashes,
        }
        if self._unsubscribe is None:
            return ServiceHealth.degraded("not receiving events (not started)", **data)
        return ServiceHealth.healthy("ok", **data)

    async def serve(
        self,
        socket: ClientSocket,
        reader: Callable[[Connection], Coroutine[Any, Any, None]],
        *,
        user_id: uuid.UUID | None = None,
    ) -> None:
        """Run one accepted client until `reader` returns (client gone) or the hub drops it."""
        if self._unsubscribe is None:
            await socket.close(CLOSE_GOING_AWAY, "not ready")
            return
        conn = Connection(next(self._ids), socket, user_id, self._queue_size)
        self._connections[conn.id] = conn
        conn._sender = asyncio.create_task(self._send_loop(conn), name=f"ws-send-{conn.id}")
        reading = asyncio.create_task(reader(conn), name=f"ws-read-{conn.id}")
        closed = asyncio.create_task(conn.closed.wait())
        log.info("websocket_connected", connection=conn.id, user_id=user_id)
        try:
            await asyncio.wait({reading, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, closed, conn._sender):
                task.cancel()
            await asyncio.gather(reading, closed, conn._sender, return_exceptions=True)
            if conn._closer is not None:
                await asyncio.wait({conn._closer}, timeout=self._close_timeout)
            if not reading.cancelled() and reading.exception() is not None:
                log.error(
                    "websocket_reader_failed", connection=conn.id, exc_info=reading.exception()
                )
            self._detach(conn)
            self._connections.pop(conn.id, None)
            log.info("websocket_disconnected", connection=conn.id, close_code=conn.close_code)

    async def subscribe(self, conn: Connection, channel: str, *, since: int | None = None) -> None:
        """Answer `subscribed`, then (with `since`, durable channels only) the stored events
        after `since`, then live events, in seq order without repeats. Raises ValueError
        for `since` on a channel without history or past `max_channels`."""
        channel = normalize_channel(channel)
        if since is not None and not is_durable(channel):
            raise ValueError(f"channel {channel!r} keeps no history; subscribe without since")
        # Market and agent channels are open-ended: cap what one client can make us index.
        if channel not in conn.channels and len(conn.channels) >= self._max_channels:
            raise ValueError(f"at most {self._max_channels} channels per connection")
        if conn.closing:
            return
        conn.channels.add(channel)
        self._by_channel.setdefault(channel, set()).add(conn)
        if since is None:
            self.send(conn, {"type": "subscribed", "channel": channel})
            return
        conn._held[channel] = []
        self.send(conn, {"type": "subscribed", "channel": channel})
        try:
            replayed = await self._bus.replay(channel, since, self._replay_limit)
        except ReplayUnavailableError as e:
            replayed = []
            self.send(conn, {"type": "error", "message": f"cannot replay {channel}: {e}"})
        finally:
            held = conn._held.pop(channel, [])
        last = since
        for event in replayed:
            last = max(last, event.seq)
            if conn.sees(event) and not self._enqueue(conn, event.text):
                return
        for event in held:
            if event.seq > last and not self._enqueue(conn, event.text):
                return

    def unsubscribe(self, conn: Connection, channel: str) -> None:
        """Stop the channel's events for this client and answer `unsubscribed`."""
        channel = normalize_channel(channel)
        conn.channels.discard(channel)
        conn._held.pop(channel, None)
        subscribers = self._by_channel.get(channel)
        if subscribers is not None:
            subscribers.discard(conn)
            if not subscribers:
                del self._by_channel[channel]
        self.send(conn, {"type": "unsubscribed", "channel": channel})

    def send(self, conn: Connection, message: Mapping[str, Any]) -> bool:
        """Queue a message for the client; False if it was dropped as too slow."""
        return self._enqueue(conn, dumps(message).decode())

    def _on_event(self, event: Event) -> None:
        subscribers = self._by_channel.get(event.channel)
        if not subscribers:
            return
        # _enqueue may drop a client, which edits the set: iterate over a copy.
        for conn in tuple(subscribers):
            if not conn.sees(event):
                continue
            held = conn._held.get(event.channel)
            if held is None:
                self._enqueue(conn, event.text)
            elif len(held) < self._queue_size:
                held.append(event)
            else:
                self._drop(conn, CLOSE_SLOW_CONSUMER, "slow consumer")

    def _enqueue(self, conn: Connection, frame: str) -> bool:
        if conn.closing:
            return False
        try:
            conn._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._drop(conn, CLOSE_SLOW_CONSUMER, "slow consumer")
            return False
        self.frames_queued += 1
        return True

    async def _send_loop(self, conn: Connection) -> None:
        try:
            while True:
                frame = await conn._queue.get()
                await conn.socket.send_text(frame)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # The client went away mid-send; the reader sees the disconnect too.
            log.debug("websocket_send_failed", connection=conn.id, error=type(e).__name__)
            conn.closed.set()

    def _drop(self, conn: Connection, code: int, reason: str) -> None:
        if conn.closing:
            return
        conn.close_code = code
        if code == CLOSE_SLOW_CONSUMER:
            self.dropped_slow += 1
        elif code == CLOSE_HEARTBEAT_TIMEOUT:
            self.dropped_heartbeat += 1
        log.warning("websocket_dropped", connection=conn.id, code=code, reason=reason)
        self._detach(conn)
        if conn._sender is not None:
            # The sender may be stuck writing to a client that does not read.
            conn._sender.cancel()
        conn._closer = asyncio.create_task(self._close(conn, code, reason))

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(conn.socket.close(code, reason), self._close_timeout)
        except Exception as e:
            log.debug("websocket_close_failed", connection=conn.id, error=type(e).__name__)
        finally:
            conn.closed.set()

    def _detach(self, conn: Connection) -> None:
        for channel in conn.channels:
            subscribers = self._by_channel.get(channel)
            if subscribers is not None:
                subscribers.discard(conn)
                if not subscribers:
                    del self._by_channel[channel]
        conn.channels.clear()
        conn._held.clear()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            self._beat()

    def _beat(self) -> None:
        now = time.monotonic()
        for conn in list(self._connections.values()):
            if conn.closing:
                continue
            if now - conn.last_seen > self._heartbeat_timeout:
                self._drop(conn, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")
            else:
                self._enqueue(conn, _PING)
