"""Live events over one WebSocket: subscribe to channels, receive each event as it happens.

Client → server (JSON text frames):
  {"type": "subscribe", "channel": "trades", "since": 41}   since: optional, durable channels
  {"type": "unsubscribe", "channel": "trades"}
  {"type": "ping"}                        answered with {"type": "pong"}
  {"type": "pong"}                        the answer to the server's heartbeat ping
Server → client: {"type": "subscribed"|"unsubscribed", "channel"}, {"type": "pong"},
  {"type": "ping"} (answer it, or any message, within the heartbeat timeout),
  {"type": "error", "message"} (the connection stays open), and events in the envelope
  {"type", "timestamp", "channel", "seq", "data"}.
Close codes: 1001 server stopping, 1008 user refused, 1013 too slow to keep up,
4000 heartbeat timeout.

GET /asyncapi.json serves the whole protocol as an AsyncAPI 3.0 document: every
channel, its messages, and their JSON Schemas, each event's data included, built from
the models of models/ws_protocol.py (whose `parse_server_message` validates a frame
the server sent).

Needs `app.state.services.websocket_hub` (a started WebSocketHub). The connection acts
for the user that `api.deps.get_websocket_user_id` resolves (solo mode: the local user);
events published for a user reach only that user's connections, public ones reach all.
A resolver refuses a client by raising `WebSocketException(1008, reason)`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.deps import WebSocketUserId
from models.asyncapi import asyncapi_document
from models.events import (
    PingMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    client_message_adapter,
)
from services.infra.websocket_hub import Connection, WebSocketHub

router = APIRouter(tags=["websocket"])

_TYPES = "subscribe, unsubscribe, ping or pong"


@router.get(
    "/asyncapi.json",
    operation_id="getAsyncApiDocument",
    response_class=JSONResponse,
    responses={
        200: {
            "description": "An AsyncAPI 3.0 document.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    summary="The /ws protocol as an AsyncAPI 3.0 document",
)
async def asyncapi(request: Request) -> JSONResponse:
    """The WebSocket at /ws (not in this OpenAPI document): its channels, the messages
    of each, and their JSON Schemas, with this server as the one to connect to."""
    secure = request.url.scheme == "https"
    document = asyncapi_document(host=request.url.netloc, protocol="wss" if secure else "ws")
    return JSONResponse(document)


@router.websocket("/ws")
async def events(websocket: WebSocket, user_id: WebSocketUserId) -> None:
    """Live events: subscribe to channels and receive each event in the event envelope.
    The protocol: GET /asyncapi.json."""
    hub = websocket.app.state.services.websocket_hub
    if not isinstance(hub, WebSocketHub):
        raise TypeError("app.state.services.websocket_hub must be a WebSocketHub")
    await websocket.accept()
    await hub.serve(websocket, partial(_read_messages, websocket, hub), user_id=user_id)


async def _read_messages(websocket: WebSocket, hub: WebSocketHub, conn: Connection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        conn.touch()
        raw: str | bytes | None = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        await _handle(hub, conn, raw)


async def _handle(hub: WebSocketHub, conn: Connection, raw: str | bytes) -> None:
    try:
        parsed = client_message_adapter.validate_json(raw)
    except ValidationError as e:
        hub.send(conn, {"type": "error", "message": _reason(e)})
        return
    if isinstance(parsed, SubscribeMessage):
        try:
            await hub.subscribe(conn, parsed.channel, since=parsed.since)
        except ValueError as e:
            hub.send(conn, {"type": "error", "message": str(e)})
    elif isinstance(parsed, UnsubscribeMessage):
        hub.unsubscribe(conn, parsed.channel)
    elif isinstance(parsed, PingMessage):
        hub.send(conn, {"type": "pong"})
    # A pong only proves the client is alive, which receiving it already recorded.


def _reason(error: ValidationError) -> str:
    first: Any = error.errors(include_url=False)[0]
    kind = first["type"]
    if kind == "json_invalid":
        return f"invalid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    if kind == "dict_type":
        return "a message must be a JSON object"
    if kind == "union_tag_not_found":
        return f'a message needs a "type": {_TYPES}'
    if kind == "union_tag_invalid":
        return f"unknown message type {first['ctx']['tag']!r}: expected {_TYPES}"
    field = ".".join(str(part) for part in first["loc"][1:])
    reason = str(first["msg"]).removeprefix("Value error, ")
    return f"{field}: {reason}" if field else reason
