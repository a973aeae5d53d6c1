"""The Anthropic provider with the real `anthropic` SDK against respx routes."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import httpx2
import pytest
import respx

from models.decisions import DECISION_TOOL_NAME
from models.enums import DecisionType
from services.llm.base import (
    InvalidDecisionError,
    ModelRefusalError,
    ProviderConfigError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RetryPolicy,
    TruncatedAnswerError,
)
from services.llm.pricing import PriceTable
from services.llm.providers.anthropic import AnthropicProvider
from tests.services.llm.support import (
    ANTHROPIC_URL,
    FakeClock,
    RecordingSleep,
    anthropic_tool_use,
    decision_payload,
    make_context,
    request_json,
)

MODEL = "claude-haiku-4-5"


@pytest.fixture
def provider(
    http_client: httpx2.AsyncClient,
    sleep: RecordingSleep,
    clock: FakeClock,
    retry: RetryPolicy,
    prices: PriceTable,
) -> AnthropicProvider:
    return AnthropicProvider(
        api_key="sk-ant-test",
        timeout=5.0,
        prices=prices,
        retry=retry,
        sleep=sleep,
        clock=clock,
        http_client=http_client,
    )


class TestToolUse:
    async def test_parses_forced_tool_use_with_usage_and_cost(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(decision_payload(), input_tokens=1200, output_tokens=300)
        )

        result = await provider.decide(make_context(), model=MODEL)

        decision = result.unwrap()
        assert decision.decision_type is DecisionType.TRADE
        assert decision.symbol == "BTC-USD"
        assert (result.prompt_tokens, result.completion_tokens) == (1200, 300)
        # claude-haiku-4-5: 1.00 in / 5.00 out per million tokens.
        assert result.cost == Decimal("0.0027")
        assert result.attempts == 1
        sent = request_json(route)
        assert sent["tool_choice"]["type"] == "tool"
        assert sent["tool_choice"]["name"] == DECISION_TOOL_NAME
        assert sent["tools"][0]["input_schema"]["type"] == "object"
        assert sent["system"].startswith("You are Trend Rider")
        headers = route.calls.last.request.headers
        # This SDK generation sends the API key as a bearer token.
        assert headers["authorization"] == "Bearer sk-ant-test"
        assert "anthropic-version" in headers

    async def test_dated_model_prices_as_its_family(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(decision_payload(), input_tokens=1_000_000, output_tokens=0)
        )

        result = await provider.decide(make_context(), model="claude-haiku-4-5-20251001")

        assert result.cost == Decimal("1.00")


class TestRepair:
    async def test_bad_tool_input_is_answered_with_an_error_tool_result(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL)
        route.side_effect = [
            httpx.Response(
                200,
                json=anthropic_tool_use(
                    decision_payload(order_type="limit"), text="Buying.", tool_use_id="toolu_a"
                ),
            ),
            httpx.Response(200, json=anthropic_tool_use(decision_payload(), tool_use_id="toolu_b")),
        ]

        result = await provider.decide(make_context(), model=MODEL)

        assert result.ok
        assert result.repaired is True
        assert result.attempts == 2
        messages = request_json(route, 1)["messages"]
        assistant, reply = messages[-2], messages[-1]
        assert assistant["role"] == "assistant"
        assert assistant["content"][0] == {"type": "text", "text": "Buying."}
        assert assistant["content"][1]["id"] == "toolu_a"
        assert reply["content"][0]["type"] == "tool_result"
        assert reply["content"][0]["tool_use_id"] == "toolu_a"
        assert reply["content"][0]["is_error"] is True
        assert "limit order needs limit_price" in reply["content"][0]["content"]

    async def test_malformed_twice_is_invalid_decision_with_both_raw_answers(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        first = decision_payload(confidence_score=7)
        second = decision_payload(reasoning="")
        route = router.post(ANTHROPIC_URL)
        route.side_effect = [
            httpx.Response(200, json=anthropic_tool_use(first)),
            httpx.Response(200, json=anthropic_tool_use(second)),
        ]

        result = await provider.decide(make_context(), model=MODEL)

        assert isinstance(result.error, InvalidDecisionError)
        assert [json.loads(a) for a in result.error.raw_answers] == [first, second]
        assert any(p.startswith("reasoning") for p in result.error.problems)
        assert result.prompt_tokens == 2400

    async def test_text_only_answer_is_repaired(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL)
        route.side_effect = [
            httpx.Response(200, json=anthropic_tool_use(None, text="Let me think.")),
            httpx.Response(200, json=anthropic_tool_use(decision_payload())),
        ]

        result = await provider.decide(make_context(), model=MODEL)

        assert result.ok
        messages = request_json(route, 1)["messages"]
        assert messages[-2]["content"] == [{"type": "text", "text": "Let me think."}]
        assert DECISION_TOOL_NAME in messages[-1]["content"]


class TestRetries:
    async def test_overloaded_529_is_retried(
        self, router: respx.Router, provider: AnthropicProvider, sleep: RecordingSleep
    ) -> None:
        route = router.post(ANTHROPIC_URL)
        overloaded = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
        }
        route.side_effect = [
            httpx.Response(529, json=overloaded),
            httpx.Response(200, json=anthropic_tool_use(decision_payload())),
        ]

        result = await provider.decide(make_context(), model=MODEL)

        assert result.ok
        assert result.attempts == 2
        assert sleep.delays == [0.5]

    async def test_429_retry_after_is_honoured(
        self, router: respx.Router, provider: AnthropicProvider, sleep: RecordingSleep
    ) -> None:
        route = router.post(ANTHROPIC_URL)
        limited = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
        route.side_effect = [
            httpx.Response(429, headers={"retry-after": "3"}, json=limited),
            httpx.Response(200, json=anthropic_tool_use(decision_payload())),
        ]

        result = await provider.decide(make_context(), model=MODEL)

        assert result.ok
        assert sleep.delays == [3.0]

    async def test_timeouts_exhaust_the_attempts(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL).mock(side_effect=httpx.ConnectTimeout("slow"))

        result = await provider.decide(make_context(), model=MODEL)

        assert isinstance(result.error, ProviderTimeoutError)
        assert route.call_count == 3

    async def test_server_error_body_reaches_the_message(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        router.post(ANTHROPIC_URL).respond(
            500, json={"type": "error", "error": {"type": "api_error", "message": "internal"}}
        )

        result = await provider.decide(make_context(), model=MODEL)

        assert isinstance(result.error, ProviderUnavailableError)
        assert "internal" in result.error.message

    async def test_unknown_model_is_a_config_error(
        self, router: respx.Router, provider: AnthropicProvider, sleep: RecordingSleep
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(
            404, json={"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}
        )

        result = await provider.decide(make_context(), model="claude-x")

        assert isinstance(result.error, ProviderConfigError)
        assert result.error.reason == "not_found"
        assert route.call_count == 1


class TestStrictTool:
    async def test_the_decision_tool_is_strict_without_a_beta_header(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))

        await provider.decide(make_context(), model=MODEL)

        assert request_json(route)["tools"][0]["strict"] is True
        # Strict tool use is generally available: no anthropic-beta header is needed.
        assert "anthropic-beta" not in route.calls.last.request.headers


class TestTruncation:
    async def test_max_tokens_stop_is_asked_again_with_the_cap_doubled(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL)
        route.side_effect = [
            httpx.Response(
                200, json=anthropic_tool_use(None, text="Let me", stop_reason="max_tokens")
            ),
            httpx.Response(200, json=anthropic_tool_use(decision_payload())),
        ]

        result = await provider.decide(make_context(), model=MODEL)

        assert result.ok
        assert result.enlarged is True
        assert [request_json(route, i)["max_tokens"] for i in (0, 1)] == [2048, 4096]
        assert len(request_json(route, 1)["messages"]) == 1

    async def test_cut_off_twice_fails_as_truncated(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(None, text="Let me", stop_reason="max_tokens")
        )

        result = await provider.decide(make_context(), model=MODEL)

        assert isinstance(result.error, TruncatedAnswerError)
        assert result.error.reason == "truncated"
        assert route.call_count == 2

    async def test_the_configured_cap_is_sent(
        self,
        router: respx.Router,
        http_client: httpx2.AsyncClient,
        sleep: RecordingSleep,
        retry: RetryPolicy,
        prices: PriceTable,
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        provider = AnthropicProvider(
            api_key="k",
            timeout=5.0,
            prices=prices,
            retry=retry,
            sleep=sleep,
            http_client=http_client,
            max_output_tokens=20_000,
        )

        await provider.decide(make_context(), model=MODEL)

        assert request_json(route)["max_tokens"] == 20_000


class TestRefusal:
    async def test_refusal_stop_ends_the_decision_keeping_the_text(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(None, text="I won't do that.", stop_reason="refusal")
        )

        result = await provider.decide(make_context(), model=MODEL)

        assert isinstance(result.error, ModelRefusalError)
        assert result.error.reason == "refused"
        assert result.raw_answers == ("I won't do that.",)
        assert route.call_count == 1
        assert result.repaired is False

    async def test_refusal_without_text_keeps_the_explanation(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        answer = anthropic_tool_use(None, stop_reason="refusal")
        answer["stop_details"] = {
            "type": "refusal",
            "category": None,
            "explanation": "This request was declined.",
        }
        router.post(ANTHROPIC_URL).respond(json=answer)

        result = await provider.decide(make_context(), model=MODEL)

        assert isinstance(result.error, ModelRefusalError)
        assert result.raw_answers == ("This request was declined.",)


class TestCacheCost:
    async def test_cache_reads_and_writes_have_their_own_rates(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        """Cache reads and writes used to be billed at the plain input price."""
        router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(
                decision_payload(),
                input_tokens=100_000,
                output_tokens=0,
                usage_extra={
                    "cache_read_input_tokens": 1_000_000,
                    "cache_creation_input_tokens": 300_000,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 200_000,
                        "ephemeral_1h_input_tokens": 100_000,
                    },
                },
            )
        )

        result = await provider.decide(make_context(), model="claude-sonnet-4-6")

        # claude-sonnet-4-6, per million: input 3.00 (0.3), cache read 0.30 (0.3),
        # 5m write 3.75 (0.75), 1h write 6.00 (0.6).
        assert result.cost == Decimal("1.95")
        assert result.prompt_tokens == 1_400_000
        assert result.cached_prompt_tokens == 1_000_000

    async def test_writes_without_a_breakdown_are_5_minute_writes(
        self, router: respx.Router, provider: AnthropicProvider
    ) -> None:
        router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(
                decision_payload(),
                input_tokens=0,
                output_tokens=0,
                usage_extra={"cache_creation_input_tokens": 1_000_000},
            )
        )

        result = await provider.decide(make_context(), model="claude-opus-4-1")

        # claude-opus-4-1: 15.00 input, 1.25x for a 5-minute write.
        assert result.cost == Decimal("18.75")
