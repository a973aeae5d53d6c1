"""OpenAI, OpenRouter and any OpenAI-compatible server, through `openai.AsyncOpenAI`.

Structured output comes two ways:
- `TOOL_CALL` (OpenAI, OpenRouter): one strict function tool, `submit_decision`, forced
  with `tool_choice`; the decision is the call's arguments.
- `JSON_SCHEMA` (Ollama, vLLM, LM Studio): `response_format` json_schema (strict). Those
  servers accept `tools` but ignore a forced `tool_choice`, while they do constrain
  decoding to a response_format schema.
Either way the answer is validated with pydantic; see `ChatProvider` for repair and retry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from models.decisions import (
    DECISION_SCHEMA_NAME,
    DECISION_TOOL_NAME,
    AgentContext,
    decision_json_schema,
)
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
    retry_after_seconds,
)
from services.llm.pricing import PriceTable
from services.llm.prompts import AnswerStyle, repair_prompt, system_prompt, user_prompt

OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_OUTPUT_TOKENS = 2048
_TOOL_DESCRIPTION = "Submit the trading decision. Call exactly once."


class StructuredOutput(StrEnum):
    TOOL_CALL = "tool_call"
    JSON_SCHEMA = "json_schema"


class OpenAIProvider(ChatProvider):
    def __init__(
        self,
        *,
        name: str,
        api_key: str,
        base_url: str,
        timeout: float,
        structured_output: StructuredOutput,
        prices: PriceTable,
        retry: RetryPolicy,
        sleep: Sleep,
        clock: Clock = time.monotonic,
        default_headers: Mapping[str, str] | None = None,
        reported_cost: bool = False,
        http_client: httpx2.AsyncClient | None = None,
        openai_account: bool = False,
    ) -> None:
        super().__init__(name=name, prices=prices, retry=retry, sleep=sleep, clock=clock)
        self._mode = structured_output
        # OpenRouter reports what it charged in `usage.cost`; trust that over the table.
        self._reported_cost = reported_cost
        self._owns_http_client = http_client is None
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=default_headers,
            http_client=http_client,
        )
        if not openai_account:
            # The SDK reads OPENAI_ORG_ID, OPENAI_PROJECT_ID and OPENAI_ADMIN_KEY from the
            # environment; they belong to an OpenAI account and go to OpenAI only, never
            # to OpenRouter or a self-hosted server.
            self._client.organization = None
            self._client.project = None
            self._client.admin_api_key = None

    @property
    def structured_output(self) -> StructuredOutput:
        return self._mode

    async def close(self) -> None:
        if self._owns_http_client:
            await self._client.close()

    def _initial_request(self, context: AgentContext, model: str) -> dict[str, Any]:
        style = (
            AnswerStyle.TOOL_CALL
            if self._mode is StructuredOutput.TOOL_CALL
            else AnswerStyle.JSON_OBJECT
        )
        request: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": system_prompt(context, style)},
                {"role": "user", "content": user_prompt(context)},
            ],
        }
        if self._mode is StructuredOutput.TOOL_CALL:
            request["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": DECISION_TOOL_NAME,
                        "description": _TOOL_DESCRIPTION,
                        "parameters": decision_json_schema(),
                        "strict": True,
                    },
                }
            ]
            request["tool_choice"] = {"type": "function", "function": {"name": DECISION_TOOL_NAME}}
            # Reasoning models refuse max_tokens; max_completion_tokens works for all.
            request["max_completion_tokens"] = MAX_OUTPUT_TOKENS
        else:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": DECISION_SCHEMA_NAME,
                    "schema": decision_json_schema(),
                    "strict": True,
                },
            }
            # Local servers know max_tokens; not all know max_completion_tokens.
            request["max_tokens"] = MAX_OUTPUT_TOKENS
        return request

    async def _send(self, request: dict[str, Any]) -> Answer:
        completion = await self._client.chat.completions.create(**request)
        return self._answer_from(completion)

    def _answer_from(self, completion: ChatCompletion) -> Answer:
        prompt_tokens = completion_tokens = None
        cost: Decimal | None = None
        if completion.usage is not None:
            prompt_tokens = completion.usage.prompt_tokens
            completion_tokens = completion.usage.completion_tokens
            if self._reported_cost:
                cost = _decimal_or_none((completion.usage.model_extra or {}).get("cost"))
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost": cost,
        }
        if not completion.choices:
            return Answer(raw_text="", problem="the answer has no choices", **usage)
        message = completion.choices[0].message
        if self._mode is StructuredOutput.TOOL_CALL:
            for call in message.tool_calls or ():
                if call.type == "function" and call.function.name == DECISION_TOOL_NAME:
                    return Answer(
                        raw_text=call.function.arguments,
                        extra={"tool_call_id": call.id},
                        **usage,
                    )
            text = message.content or message.refusal or ""
            return Answer(
                raw_text=text,
                problem=f"the answer did not call the {DECISION_TOOL_NAME} tool",
                **usage,
            )
        if message.refusal:
            return Answer(raw_text=message.refusal, problem="the model refused to answer", **usage)
        return Answer(raw_text=message.content or "", **usage)

    def _repair_request(
        self, request: dict[str, Any], answer: Answer, problems: Sequence[str]
    ) -> dict[str, Any]:
        call_id = answer.extra.get("tool_call_id")
        turn: list[dict[str, Any]]
        if call_id is not None:
            # A tool call must be answered by a tool message carrying its id.
            turn = [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": DECISION_TOOL_NAME, "arguments": answer.raw_text},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": repair_prompt(problems)},
            ]
        else:
            turn = [
                {"role": "assistant", "content": answer.raw_text},
                {"role": "user", "content": repair_prompt(problems)},
            ]
        return {**request, "messages": [*request["messages"], *turn]}

    def _translate(self, error: Exception) -> ProviderError | None:
        return translate_openai_error(error, provider=self.name)


def _decimal_or_none(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() and result >= 0 else None


def translate_openai_error(error: Exception, *, provider: str) -> ProviderError | None:
    """The OpenAI SDK error as a ProviderError (None if it is not one)."""
    if isinstance(error, openai.APITimeoutError):
        return ProviderTimeoutError(f"{provider} did not answer in time", provider=provider)
    if isinstance(error, openai.APIConnectionError):
        return ProviderUnavailableError(
            f"cannot reach {provider}: {error.message}", provider=provider
        )
    if not isinstance(error, openai.APIStatusError):
        if isinstance(error, openai.APIError):
            return ProviderError(
                f"{provider} sent an unreadable answer: {error.message}", provider=provider
            )
        return None
    status = error.status_code
    message = f"{provider} answered HTTP {status}: {error.message}"
    if status == 429:
        # Out of credit is a 429 too, but waiting will not fix it.
        quota = error.code == "insufficient_quota"
        return ProviderRateLimitedError(
            message,
            provider=provider,
            retryable=not quota,
            retry_after=retry_after_seconds(error.response.headers),
        )
    if status == 408:
        return ProviderTimeoutError(message, provider=provider)
    if status >= 500 or status == 409:
        return ProviderUnavailableError(
            message, provider=provider, retry_after=retry_after_seconds(error.response.headers)
        )
    if status in (401, 403):
        return ProviderConfigError(
            f"{provider} rejected the API key (HTTP {status})",
            provider=provider,
            reason="key_rejected",
        )
    if status == 404:
        return ProviderConfigError(message, provider=provider, reason="not_found")
    return ProviderError(message, provider=provider, reason="request_rejected")
