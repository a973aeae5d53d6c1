"""OpenAI, OpenRouter and any OpenAI-compatible server, through `openai.AsyncOpenAI`.

Structured output comes two ways:
- `TOOL_CALL` (OpenAI, OpenRouter): one strict function tool, `submit_decision`, forced
  with `tool_choice`; the decision is the call's arguments.
- `JSON_SCHEMA` (Ollama, vLLM, LM Studio): `response_format` json_schema (strict). Those
  servers accept `tools` but ignore a forced `tool_choice`, while they do constrain
  decoding to a response_format schema.
Either way the answer is validated with pydantic; see `ChatProvider` for repair and retry.
With the strict tool, `parallel_tool_calls` is false (one call, whole), except on the
o-series, which reject the parameter. OpenRouter requests carry
`provider: {"require_parameters": true}`, so OpenRouter routes only to upstreams that
honour every parameter sent (the strict tool, the forced choice, the token cap).

Reasoning models (the o-series: o1, o3, o4-mini, ...; and gpt-5*, except the
gpt-5-chat models) get `max_completion_tokens` (never `max_tokens`, which they refuse)
with room for their hidden reasoning: LLM_MAX_COMPLETION_TOKENS, else 25000, OpenAI's
advice for a start. `reasoning_effort` is sent when LLM_REASONING_EFFORT is set.
No sampling parameter (temperature, top_p) is ever sent, so nothing they reject is.
Other models get LLM_MAX_COMPLETION_TOKENS, else 2048. An answer cut off at the cap is
asked again with it doubled, at most 100000 for reasoning models and 16384 for others.
"""

from __future__ import annotations

import re
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
    enlarge_output_cap,
    retry_after_seconds,
)
from services.llm.pricing import PriceTable
from services.llm.prompts import AnswerStyle, repair_prompt, system_prompt, user_prompt

OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_OUTPUT_TOKENS = 2048
MAX_OUTPUT_TOKENS_CEILING = 16_384
REASONING_MAX_OUTPUT_TOKENS = 25_000
REASONING_MAX_OUTPUT_TOKENS_CEILING = 100_000
_TOOL_DESCRIPTION = "Submit the trading decision. Call exactly once."
_O_SERIES = re.compile(r"o\d+(-.*)?")
# Body fields the SDK has no parameter for; sent through `extra_body`.
_EXTRA_BODY_KEYS = ("provider",)


def _bare_model(model: str) -> str:
    return model.strip().lower().rsplit("/", 1)[-1]


def is_o_series(model: str) -> bool:
    return _O_SERIES.fullmatch(_bare_model(model)) is not None


def is_reasoning_model(model: str) -> bool:
    """o1, o3, o4-mini, ... and gpt-5* (not the gpt-5 chat models), by id; a vendor
    prefix (`openai/o3` on OpenRouter) is ignored."""
    bare = _bare_model(model)
    return is_o_series(bare) or (bare.startswith("gpt-5") and "-chat" not in bare)


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
        reasoning_effort: str | None = None,
        max_output_tokens: int | None = None,
        require_parameters: bool = False,
    ) -> None:
        super().__init__(name=name, prices=prices, retry=retry, sleep=sleep, clock=clock)
        self._mode = structured_output
        self._reasoning_effort = reasoning_effort
        self._max_output_tokens = max_output_tokens
        # OpenRouter: route only to upstreams that support every parameter sent.
        self._require_parameters = require_parameters
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
        reasoning = is_reasoning_model(model)
        cap = self._max_output_tokens or (
            REASONING_MAX_OUTPUT_TOKENS if reasoning else MAX_OUTPUT_TOKENS
        )
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
            if not is_o_series(model):
                request["parallel_tool_calls"] = False
            # Reasoning models refuse max_tokens; max_completion_tokens works for all.
            request["max_completion_tokens"] = cap
        else:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": DECISION_SCHEMA_NAME,
                    "schema": decision_json_schema(),
                    "strict": True,
                },
            }
            # Local servers know max_tokens; not all know max_completion_tokens, which is
            # the only one reasoning models take.
            request["max_completion_tokens" if reasoning else "max_tokens"] = cap
        if reasoning and self._reasoning_effort is not None:
            request["reasoning_effort"] = self._reasoning_effort
        if self._require_parameters:
            request["provider"] = {"require_parameters": True}
        return request

    def _enlarged_request(self, request: dict[str, Any]) -> dict[str, Any] | None:
        reasoning = is_reasoning_model(str(request.get("model", "")))
        ceiling = REASONING_MAX_OUTPUT_TOKENS_CEILING if reasoning else MAX_OUTPUT_TOKENS_CEILING
        return enlarge_output_cap(request, ceiling)

    async def _send(self, request: dict[str, Any]) -> Answer:
        body = dict(request)
        extra = {key: body.pop(key) for key in _EXTRA_BODY_KEYS if key in body}
        completion = await self._client.chat.completions.create(**body, extra_body=extra or None)
        return self._answer_from(completion)

    def _answer_from(self, completion: ChatCompletion) -> Answer:
        usage = self._usage(completion)
        if not completion.choices:
            return Answer(raw_text="", problem="the answer has no choices", **usage)
        choice = completion.choices[0]
        message = choice.message
        if message.refusal or choice.finish_reason == "content_filter":
            reason = "content_filter" if choice.finish_reason == "content_filter" else "refused"
            text = message.refusal or message.content or ""
            return Answer(raw_text=text, refusal=reason, **usage)
        usage["truncated"] = choice.finish_reason == "length"
        if self._mode is StructuredOutput.TOOL_CALL:
            for call in message.tool_calls or ():
                if call.type == "function" and call.function.name == DECISION_TOOL_NAME:
                    return Answer(
                        raw_text=call.function.arguments,
                        extra={"tool_call_id": call.id},
                        **usage,
                    )
            return Answer(
                raw_text=message.content or "",
                problem=f"the answer did not call the {DECISION_TOOL_NAME} tool",
                **usage,
            )
        return Answer(raw_text=message.content or "", **usage)

    def _usage(self, completion: ChatCompletion) -> dict[str, Any]:
        usage = completion.usage
        if usage is None:
            return {"prompt_tokens": None, "completion_tokens": None, "cost": None}
        details = usage.prompt_tokens_details
        cost = None
        if self._reported_cost:
            cost = _decimal_or_none((usage.model_extra or {}).get("cost"))
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_tokens": (details.cached_tokens or 0) if details is not None else 0,
            "cost": cost,
        }

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
