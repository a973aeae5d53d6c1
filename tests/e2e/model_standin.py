"""A stand-in for the OpenAI and Anthropic APIs on 127.0.0.1, for the end-to-end tier.

The server under test runs in its own process with the real openai and anthropic SDKs;
`OPENAI_BASE_URL` and `ANTHROPIC_BASE_URL` point them here. Both endpoints answer every
request with the scripted decision, in each API's own format (an OpenAI chat completion
whose content is the decision as JSON, an Anthropic message whose tool_use block calls
`submit_decision`), and record the requests they were sent. It runs in a thread of the
test process with its own event loop, so it outlives any one test's loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PROMPT_TOKENS = 321
COMPLETION_TOKENS = 45


@dataclass
class StandIn:
    decision: dict[str, Any]
    url: str = ""
    openai_requests: list[dict[str, Any]] = field(default_factory=list)
    anthropic_requests: list[dict[str, Any]] = field(default_factory=list)

    async def chat_completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.openai_requests.append({"headers": dict(request.headers), "body": body})
        return JSONResponse(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": json.dumps(self.decision)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                },
            }
        )

    async def messages(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.anthropic_requests.append({"headers": dict(request.headers), "body": body})
        return JSONResponse(
            {
                "id": "msg_standin",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", ""),
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_standin",
                        "name": "submit_decision",
                        "input": self.decision,
                    }
                ],
                "stop_reason": "tool_use",
                "stop_sequence": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
            }
        )


@contextmanager
def serving(decision: dict[str, Any]) -> Iterator[StandIn]:
    """Serve the stand-in on a free port; `url` is its base (the SDKs add /v1/...)."""
    standin = StandIn(decision)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", standin.chat_completions, methods=["POST"]),
            Route("/v1/messages", standin.messages, methods=["POST"]),
        ]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # Listening before the thread starts: early clients wait in the backlog.
    sock.listen(128)
    standin.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        yield standin
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
