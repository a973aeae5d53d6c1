"""A stand-in for the OpenAI and Anthropic APIs on 127.0.0.1, for the end-to-end tier.

The server under test runs in its own process with the real openai and anthropic SDKs;
`OPENAI_BASE_URL` and `ANTHROPIC_BASE_URL` point them here. Both endpoints answer every
request with the scripted decision, in each API's own format (an OpenAI chat completion
whose content is the decision as JSON, an Anthropic message whose tool_use block calls
`submit_decision`), and record the requests they were sent. It runs in a thread of the
test process with its own event loop, so it outlives any one test's loop.

A test can script the next answers of one provider with `script(provider, *answers)`:
`"truncated"` (cut off at the token cap: OpenAI `finish_reason` "length", Anthropic
`stop_reason` "max_tokens"), `"refusal"` (OpenAI `message.refusal`, Anthropic
`stop_reason` "refusal", each with `REFUSAL`) or `"decision"`; once the script is
used up, every answer is the decision again. Usage always reports the prompt cache:
`CACHED_TOKENS` of the `PROMPT_TOKENS` were read from it (OpenAI
`prompt_tokens_details.cached_tokens`; Anthropic `cache_read_input_tokens`, with
`input_tokens` the rest and `cache_creation_input_tokens` 0), so the prompt total
is `PROMPT_TOKENS` on both.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
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
CACHED_TOKENS = 100
OPENROUTER_COST = 0.000321
REFUSAL = "Stand-in model: I won't make this decision."
ANSWERS = ("decision", "truncated", "refusal")


@dataclass
class StandIn:
    decision: dict[str, Any]
    url: str = ""
    openai_requests: list[dict[str, Any]] = field(default_factory=list)
    anthropic_requests: list[dict[str, Any]] = field(default_factory=list)
    scripts: dict[str, deque[str]] = field(
        default_factory=lambda: {"openai": deque(), "anthropic": deque()}
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, provider: str, *answers: str) -> None:
        """The next answers of `provider` ("openai" or "anthropic"), in order."""
        unknown = [a for a in answers if a not in ANSWERS]
        if provider not in self.scripts or unknown:
            raise ValueError(f"cannot script {provider!r} with {unknown or answers}")
        with self.lock:
            self.scripts[provider].extend(answers)

    def _next(self, provider: str) -> str:
        with self.lock:
            queue = self.scripts[provider]
            return queue.popleft() if queue else "decision"

    async def chat_completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.openai_requests.append({"headers": dict(request.headers), "body": body})
        answer = self._next("openai")
        message: dict[str, Any] = {"role": "assistant", "content": json.dumps(self.decision)}
        finish_reason = "stop"
        tools = body.get("tools") or []
        if tools and answer == "decision":
            # Asked for a tool call (OpenRouter, OpenAI itself): the decision as one.
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_standin",
                        "type": "function",
                        "function": {
                            "name": tools[0]["function"]["name"],
                            "arguments": json.dumps(self.decision),
                        },
                    }
                ],
            }
            finish_reason = "tool_calls"
        if answer == "truncated":
            message["content"] = json.dumps(self.decision)[:20]
            finish_reason = "length"
        elif answer == "refusal":
            message = {"role": "assistant", "content": None, "refusal": REFUSAL}
        return JSONResponse(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                    "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
                    # OpenRouter (asked with its `provider` preferences) reports its charge.
                    **({"cost": OPENROUTER_COST} if "provider" in body else {}),
                },
            }
        )

    async def messages(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.anthropic_requests.append({"headers": dict(request.headers), "body": body})
        answer = self._next("anthropic")
        content: list[dict[str, Any]] = [
            {
                "type": "tool_use",
                "id": "toolu_standin",
                "name": "submit_decision",
                "input": self.decision,
            }
        ]
        stop_reason = "tool_use"
        if answer == "truncated":
            content = [{"type": "text", "text": "Looking at the indicators"}]
            stop_reason = "max_tokens"
        elif answer == "refusal":
            content = [{"type": "text", "text": REFUSAL}]
            stop_reason = "refusal"
        return JSONResponse(
            {
                "id": "msg_standin",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", ""),
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": PROMPT_TOKENS - CACHED_TOKENS,
                    "cache_read_input_tokens": CACHED_TOKENS,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": COMPLETION_TOKENS,
                },
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
