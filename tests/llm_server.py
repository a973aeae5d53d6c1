"""An OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks that put
the real openai SDK in the loop without the network.

Answers are scripted per agent: the agent's name is found in the request (the system
prompt opens "You are <name>,"), and its script gives the next answer: a decision
(sent as the message's JSON content, as a JSON-schema response format expects), raw
text (malformed on purpose), or an HTTP status. `delay` stands for the model's latency.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: a decision, raw content, or an error status."""

    decision: dict[str, Any] | None = None
    content: str | None = None
    status: int = 200


@dataclass
class ScriptedModel:
    delay: float = 0.0
    # Agent name -> answers in order; the last one repeats.
    scripts: dict[str, deque[Reply]] = field(default_factory=dict)
    default: Reply | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    in_flight: int = 0
    max_in_flight: int = 0

    def script(self, agent_name: str, *replies: Reply) -> None:
        self.scripts[agent_name] = deque(replies)

    def _reply_for(self, text: str) -> tuple[str, Reply]:
        for name, replies in self.scripts.items():
            if f"You are {name}," in text:
                reply = replies.popleft() if len(replies) > 1 else replies[0]
                return name, reply
        if self.default is None:
            raise LookupError("no script matches this request")
        return "", self.default

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        name, reply = self._reply_for(json.dumps(body))
        self.calls[name] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)  # the model thinking, not synchronisation
        finally:
            self.in_flight -= 1
        if reply.status != 200:
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error"}},
                status_code=reply.status,
            )
        content = reply.content if reply.content is not None else json.dumps(reply.decision)
        return JSONResponse(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "test"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        )


@asynccontextmanager
async def serve(model: ScriptedModel) -> AsyncIterator[str]:
    """Serve `model` on a free port; yields the base URL (ending in /v1)."""
    app = Starlette(routes=[Route("/v1/chat/completions", model.chat, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the server task runs: a client connecting now waits in the
    # backlog until uvicorn accepts, so nobody has to wait for "started".
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await task
        sock.close()
