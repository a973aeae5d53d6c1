"""Test support for the LLM layer: a respx router behind an httpx2 transport, canned
OpenAI and Anthropic answers, contexts built from crafted closes, a fake clock.

The OpenAI and Anthropic SDKs send through httpx2, which respx cannot patch; the
transport below hands each httpx2 request to a respx router (converted to httpx and
back), so the real SDK clients run end to end and respx does the routing and recording.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import respx

from models.decisions import (
    DECISION_TOOL_NAME,
    AgentContext,
    CandleData,
    PortfolioData,
    PositionData,
    RiskBudget,
    SymbolContext,
    TickerData,
)

AS_OF = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"


class RespxTransport(httpx2.AsyncBaseTransport):
    def __init__(self, router: respx.Router) -> None:
        self.router = router

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        legacy = httpx.Request(
            request.method, str(request.url), headers=request.headers.multi_items(), content=body
        )
        try:
            response = await self.router.async_handler(legacy)
        except httpx.TransportError as e:
            # httpx2 mirrors httpx's exception names (ReadTimeout, ConnectError, ...).
            kind = getattr(httpx2, type(e).__name__, httpx2.TransportError)
            raise kind(str(e), request=request) from e
        content = await response.aread()
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-length"]
        return httpx2.Response(
            response.status_code, headers=headers, content=content, request=request
        )


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """Stands in for asyncio.sleep: records each delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def request_json(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


def decision_payload(**overrides: Any) -> dict[str, Any]:
    """A valid buy decision in the strict wire shape (every field present)."""
    payload: dict[str, Any] = {
        "decision_type": "trade",
        "symbol": "BTC-USD",
        "side": "buy",
        "quantity": None,
        "fraction_of_equity": 0.05,
        "order_type": "market",
        "limit_price": None,
        "stop_price": None,
        "reasoning": "SMA10 crossed above SMA30; RSI 55 leaves room to run.",
        "confidence_score": 0.7,
        "target_weights": None,
    }
    payload.update(overrides)
    return payload


def openai_tool_call(
    arguments: str,
    *,
    prompt_tokens: int = 1000,
    completion_tokens: int = 200,
    usage_extra: dict[str, Any] | None = None,
    call_id: str = "call_1",
    finish_reason: str = "tool_calls",
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_767_614_400,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": DECISION_TOOL_NAME, "arguments": arguments},
                        }
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            **(usage_extra or {}),
        },
    }


def openai_refusal(refusal: str, *, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat completion whose message is a refusal (content null, `refusal` set)."""
    answer = openai_content("", finish_reason=finish_reason)
    answer["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": refusal}
    return answer


def openai_content(
    content: str,
    *,
    prompt_tokens: int = 800,
    completion_tokens: int = 150,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": 1_767_614_400,
        "model": "llama3.1",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def anthropic_tool_use(
    tool_input: dict[str, Any] | None,
    *,
    text: str | None = None,
    input_tokens: int = 1200,
    output_tokens: int = 300,
    tool_use_id: str = "toolu_1",
    stop_reason: str | None = None,
    usage_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    if tool_input is not None:
        content.append(
            {"type": "tool_use", "id": tool_use_id, "name": DECISION_TOOL_NAME, "input": tool_input}
        )
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_input is not None else "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            **(usage_extra or {}),
        },
    }


def candles(
    closes: Sequence[Decimal | str | float], *, start: datetime = AS_OF
) -> list[CandleData]:
    values = [Decimal(str(c)) for c in closes]
    first = start - timedelta(hours=len(values))
    return [
        CandleData(
            open_time=first + timedelta(hours=i),
            open=v,
            high=v,
            low=v,
            close=v,
            volume=Decimal(10),
        )
        for i, v in enumerate(values)
    ]


def symbol_context(symbol: str, closes: Sequence[Decimal | str | float]) -> SymbolContext:
    bars = candles(closes)
    return SymbolContext(
        symbol=symbol,
        ticker=TickerData(last=bars[-1].close, timestamp=AS_OF) if bars else None,
        candles=bars,
    )


def make_context(
    closes: Sequence[Decimal | str | float] | None = None,
    *,
    symbols: Sequence[SymbolContext] | None = None,
    strategies: Sequence[str] = ("Moving Average Crossover",),
    aggression: float | str | None = 0.5,
    risk_tolerance: str = "0.5",
    cash: str = "10000",
    equity: str = "10000",
    positions: Sequence[PositionData] = (),
    risk: RiskBudget | None = None,
    max_position_pct: str = "10",
) -> AgentContext:
    if symbols is None:
        symbols = [symbol_context("BTC-USD", closes if closes is not None else [100] * 40)]
    personality: dict[str, Any] = {"style": "balanced"}
    if aggression is not None:
        personality["aggression"] = aggression
    return AgentContext(
        agent_id="agent-1",
        agent_name="Trend Rider",
        personality=personality,
        strategies=list(strategies),
        risk_tolerance=Decimal(risk_tolerance),
        max_position_pct=Decimal(max_position_pct),
        as_of=AS_OF,
        symbols=list(symbols),
        portfolio=PortfolioData(
            cash=Decimal(cash), equity=Decimal(equity), positions=list(positions)
        ),
        risk=risk or RiskBudget(),
    )
