"""Anthropic, through `anthropic.AsyncAnthropic`.

Structured output is one strict tool (`strict: true`: Anthropic constrains the input
to the schema; generally available, no beta header), `submit_decision`, forced with
`tool_choice={"type": "tool", "name": ...}`; the decision is the tool_use block's
input, validated with pydantic. A bad input is answered with a `tool_result` marked
`is_error` that lists the problems, and the tool is forced again (one repair).

`max_tokens` is LLM_MAX_COMPLETION_TOKENS, else 2048; an answer stopped at it
(`stop_reason` "max_tokens") is asked again with it doubled, at most 32000. A
`stop_reason` of "refusal" ends the decision as a refusal, the model's text (or the
`stop_details` explanation) kept. Cache reads and writes are priced at their own rates
(see `services.llm.pricing`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncAnthropic
from anthropic.types import Message

from models.decisions import DECISION_TOOL_NAME, AgentContext, decision_json_schema
from services.llm.base import (
    Answer,
    ChatProvider,
    Clock,
    ProviderConfigError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RetryPolicy,
    Sleep,
    enlarge_output_cap,
    retry_after_seconds,
)
from services.llm.pricing import PriceTable
from services.llm.prompts import AnswerStyle, repair_prompt, system_prompt, user_prompt

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
MAX_OUTPUT_TOKENS = 2048
MAX_OUTPUT_TOKENS_CEILING = 32_000


class AnthropicProvider(ChatProvider):
    def __init__(
        self,
        *,
        api_key: str,
        timeout: float,
        prices: PriceTable,
        retry: RetryPolicy,
        sleep: Sleep,
        clock: Clock = time.monotonic,
        base_url: str = ANTHROPIC_BASE_URL,
        http_client: httpx2.AsyncClient | None = None,
        max_output_tokens: int | None = None,
    ) -> None:
        super().__init__(name="anthropic", prices=prices, retry=retry, sleep=sleep, clock=clock)
        self._max_output_tokens = max_output_tokens or MAX_OUTPUT_TOKENS
        self._owns_http_client = http_client is None
        # Always explicit: ANTHROPIC_BASE_URL is read by the settings (LLMSettings, from the
        # environment or .env) and passed here, so the SDK's own reading never differs.
        self._client = AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )

    async def close(self) -> None:
        if self._owns_http_client:
            await self._client.close()

    def _initial_request(self, context: AgentContext, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "max_tokens": self._max_output_tokens,
            "system": system_prompt(context, AnswerStyle.TOOL_CALL),
            "messages": [{"role": "user", "content": user_prompt(context)}],
            "tools": [
                {
                    "name": DECISION_TOOL_NAME,
                    "description": "Submit the trading decision. Call exactly once.",
                    "input_schema": decision_json_schema(),
                    "strict": True,
                }
            ],
            "tool_choice": {
                "type": "tool",
                "name": DECISION_TOOL_NAME,
                "disable_parallel_tool_use": True,
            },
        }

    async def _send(self, request: dict[str, Any]) -> Answer:
        message = await self._client.messages.create(**request)
        return self._answer_from(message)

    def _enlarged_request(self, request: dict[str, Any]) -> dict[str, Any] | None:
        return enlarge_output_cap(request, MAX_OUTPUT_TOKENS_CEILING)

    def _answer_from(self, message: Message) -> Answer:
        usage = message.usage
        # Cache reads and writes are input too (`input_tokens` counts neither); each has
        # its own price, the 1-hour writes apart from the 5-minute ones when reported.
        cache_read = usage.cache_read_input_tokens or 0
        cache_write = usage.cache_creation_input_tokens or 0
        write_1h = usage.cache_creation.ephemeral_1h_input_tokens if usage.cache_creation else 0
        write_1h = min(write_1h, cache_write)
        prompt_tokens = usage.input_tokens + cache_write + cache_read
        blocks: list[dict[str, Any]] = []
        tool_use: dict[str, Any] | None = None
        for block in message.content:
            if block.type == "text":
                blocks.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                entry = {
                    "type": "tool_use",
                    "id": block.id,
                    "name": block.name,
                    "input": block.input,
                }
                blocks.append(entry)
                if tool_use is None and block.name == DECISION_TOOL_NAME:
                    tool_use = entry
        common: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": usage.output_tokens,
            "cached_tokens": cache_read,
            "cache_write_tokens": cache_write - write_1h,
            "cache_write_1h_tokens": write_1h,
            "extra": {"content": blocks, "tool_use_id": tool_use["id"] if tool_use else None},
            "truncated": message.stop_reason == "max_tokens",
        }
        if message.stop_reason == "refusal":
            text = "\n".join(b["text"] for b in blocks if b["type"] == "text")
            if not text and message.stop_details is not None:
                text = message.stop_details.explanation or ""
            return Answer(raw_text=text, refusal="refused", **common)
        if tool_use is None:
            text = "\n".join(b["text"] for b in blocks if b["type"] == "text")
            return Answer(
                raw_text=text,
                problem=f"the answer did not call the {DECISION_TOOL_NAME} tool",
                **common,
            )
        return Answer(
            raw_text=json.dumps(tool_use["input"], separators=(",", ":")),
            payload=tool_use["input"],
            **common,
        )

    def _repair_request(
        self, request: dict[str, Any], answer: Answer, problems: Sequence[str]
    ) -> dict[str, Any]:
        content = answer.extra.get("content") or [{"type": "text", "text": answer.raw_text or "-"}]
        tool_use_id = answer.extra.get("tool_use_id")
        reply: list[dict[str, Any]] | str
        if tool_use_id is not None:
            reply = [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_use_id,
                    "is_error": True,
                    "content": repair_prompt(problems),
                }
            ]
        else:
            reply = repair_prompt(problems)
        turn = [{"role": "assistant", "content": content}, {"role": "user", "content": reply}]
        return {**request, "messages": [*request["messages"], *turn]}

    def _translate(self, error: Exception) -> ProviderError | None:
        return translate_anthropic_error(error, provider=self.name)


def translate_anthropic_error(error: Exception, *, provider: str) -> ProviderError | None:
    """The Anthropic SDK error as a ProviderError (None if it is not one)."""
    if isinstance(error, anthropic.APITimeoutError):
        return ProviderTimeoutError(f"{provider} did not answer in time", provider=provider)
    if isinstance(error, anthropic.APIConnectionError):
        return ProviderUnavailableError(
            f"cannot reach {provider}: {error.message}", provider=provider
        )
    if not isinstance(error, anthropic.APIStatusError):
        if isinstance(error, anthropic.APIError):
            return ProviderError(
                f"{provider} sent an unreadable answer: {error.message}", provider=provider
            )
        return None
    status = error.status_code
    message = f"{provider} answered HTTP {status}: {error.api_message or error.message}"
    retry_after = retry_after_seconds(error.response.headers)
    if status == 429:
        return ProviderRateLimitedError(message, provider=provider, retry_after=retry_after)
    if status == 408:
        return ProviderTimeoutError(message, provider=provider)
    # 529 "overloaded" is a 5xx too.
    if status >= 500 or status == 409:
        return ProviderUnavailableError(message, provider=provider, retry_after=retry_after)
    if status in (401, 403):
        return ProviderConfigError(
            f"{provider} rejected the API key (HTTP {status})",
            provider=provider,
            reason="key_rejected",
        )
    if status == 404:
        return ProviderConfigError(message, provider=provider, reason="not_found")
    return ProviderError(message, provider=provider, reason="request_rejected")
