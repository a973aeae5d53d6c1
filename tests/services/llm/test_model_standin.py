"""The end-to-end tier's model stand-in (tests/e2e/model_standin.py), driven by the real
providers and SDKs over HTTP: its scripted truncations and refusals, and its cache usage,
mean to the LLM layer what the real APIs' would."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from services.llm.base import ModelRefusalError, RetryPolicy, TruncatedAnswerError
from services.llm.pricing import PriceTable
from services.llm.providers.anthropic import AnthropicProvider
from services.llm.providers.openai import OpenAIProvider, StructuredOutput
from tests.e2e import model_standin
from tests.services.llm.support import RecordingSleep, make_context

DECISION = {
    "decision_type": "hold",
    "symbol": "BTC-USD",
    "reasoning": "Stand-in: flat trend.",
    "confidence_score": "0.55",
}


@pytest.fixture(scope="module")
def standin() -> Iterator[model_standin.StandIn]:
    with model_standin.serving(DECISION) as running:
        yield running


def openai(standin: model_standin.StandIn) -> OpenAIProvider:
    return OpenAIProvider(
        name="openai",
        api_key="sk-standin",
        base_url=f"{standin.url}/v1",
        timeout=5.0,
        structured_output=StructuredOutput.JSON_SCHEMA,
        prices=PriceTable(),
        retry=RetryPolicy(max_attempts=1),
        sleep=RecordingSleep(),
    )


def anthropic(standin: model_standin.StandIn) -> AnthropicProvider:
    return AnthropicProvider(
        api_key="sk-ant-standin",
        base_url=standin.url,
        timeout=5.0,
        prices=PriceTable(),
        retry=RetryPolicy(max_attempts=1),
        sleep=RecordingSleep(),
    )


async def test_openai_truncation_then_refusal_then_the_decision(
    standin: model_standin.StandIn,
) -> None:
    provider = openai(standin)
    standin.script("openai", "truncated", "truncated", "refusal")
    try:
        truncated = await provider.decide(make_context(), model="gpt-4o-mini")
        refused = await provider.decide(make_context(), model="gpt-4o-mini")
        decided = await provider.decide(make_context(), model="gpt-4o-mini")
    finally:
        await provider.close()

    assert isinstance(truncated.error, TruncatedAnswerError)
    assert truncated.attempts == 2
    assert isinstance(refused.error, ModelRefusalError)
    assert refused.raw_answers == (model_standin.REFUSAL,)
    assert decided.ok
    assert decided.prompt_tokens == model_standin.PROMPT_TOKENS
    assert decided.cached_prompt_tokens == model_standin.CACHED_TOKENS
    # gpt-4o-mini: 221 fresh at 0.15, 100 cached at 0.075, 45 out at 0.60 per million.
    assert decided.cost == Decimal("0.00006765")


async def test_anthropic_truncation_is_retried_and_refusal_kept(
    standin: model_standin.StandIn,
) -> None:
    provider = anthropic(standin)
    standin.script("anthropic", "truncated", "decision", "refusal")
    try:
        retried = await provider.decide(make_context(), model="claude-haiku-4-5")
        refused = await provider.decide(make_context(), model="claude-haiku-4-5")
    finally:
        await provider.close()

    assert retried.ok
    assert retried.enlarged is True
    assert [r["body"]["max_tokens"] for r in standin.anthropic_requests[-3:-1]] == [2048, 4096]
    assert isinstance(refused.error, ModelRefusalError)
    assert refused.raw_answers == (model_standin.REFUSAL,)
    assert refused.prompt_tokens == model_standin.PROMPT_TOKENS
    assert refused.cached_prompt_tokens == model_standin.CACHED_TOKENS


def test_an_unknown_script_is_refused(standin: model_standin.StandIn) -> None:
    with pytest.raises(ValueError, match="cannot script"):
        standin.script("openai", "explode")
    with pytest.raises(ValueError, match="cannot script"):
        standin.script("gemini", "refusal")
