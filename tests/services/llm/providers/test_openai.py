"""The OpenAI-family provider with the real `openai` SDK against respx routes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import pytest
import respx

from models.decisions import DECISION_TOOL_NAME
from models.enums import DecisionType, OrderSide
from services.llm.base import (
    InvalidDecisionError,
    ModelRefusalError,
    ProviderConfigError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RetryPolicy,
    TruncatedAnswerError,
)
from services.llm.pricing import PriceTable
from services.llm.providers.openai import OPENAI_BASE_URL, OpenAIProvider, StructuredOutput
from tests.services.llm.support import (
    OPENAI_URL,
    FakeClock,
    RecordingSleep,
    decision_payload,
    make_context,
    openai_content,
    openai_refusal,
    openai_tool_call,
    request_json,
)

LOCAL_URL = "http://127.0.0.1:11434/v1"
OPENROUTER_URL = "https://openrouter.ai/api/v1"


@pytest.fixture
def make_provider(
    http_client: httpx2.AsyncClient,
    sleep: RecordingSleep,
    clock: FakeClock,
    retry: RetryPolicy,
    prices: PriceTable,
) -> Any:
    def build(**overrides: Any) -> OpenAIProvider:
        options: dict[str, Any] = {
            "name": "openai",
            "api_key": "sk-test",
            "base_url": OPENAI_BASE_URL,
            "timeout": 5.0,
            "structured_output": StructuredOutput.TOOL_CALL,
            "prices": prices,
            "retry": retry,
            "sleep": sleep,
            "clock": clock,
            "http_client": http_client,
        }
        options.update(overrides)
        return OpenAIProvider(**options)

    return build


class TestToolCall:
    async def test_parses_forced_tool_call_with_usage_and_cost(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(
                json.dumps(decision_payload()), prompt_tokens=1000, completion_tokens=200
            )
        )

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.error is None
        decision = result.unwrap()
        assert decision.decision_type is DecisionType.TRADE
        assert decision.side is OrderSide.BUY
        assert decision.fraction_of_equity == Decimal("0.05")
        assert (result.prompt_tokens, result.completion_tokens) == (1000, 200)
        # gpt-4o-mini: 0.15 in / 0.60 out per million tokens.
        assert result.cost == Decimal("0.00027")
        assert result.attempts == 1
        assert result.repaired is False
        assert result.raw_answer == json.dumps(decision_payload())
        sent = request_json(route)
        assert sent["tool_choice"] == {"type": "function", "function": {"name": DECISION_TOOL_NAME}}
        assert sent["tools"][0]["function"]["strict"] is True
        assert "response_format" not in sent
        assert route.calls.last.request.headers["authorization"] == "Bearer sk-test"

    async def test_request_is_json_serializable_and_matches_what_was_sent(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert json.loads(json.dumps(result.request)) == request_json(route)
        json.dumps(result.to_record())

    async def test_unknown_model_has_unknown_cost_not_zero(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        router.post(OPENAI_URL).respond(json=openai_tool_call(json.dumps(decision_payload())))

        result = await make_provider().decide(make_context(), model="my-finetune-7")

        assert result.ok
        assert result.cost is None
        assert result.prompt_tokens == 1000


class TestRepair:
    async def test_malformed_json_is_repaired_once(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        good = json.dumps(decision_payload())
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(
                200, json=openai_tool_call('{"decision_type": "trade", ', call_id="call_a")
            ),
            httpx.Response(200, json=openai_tool_call(good, call_id="call_b")),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.ok
        assert result.repaired is True
        assert result.attempts == 2
        assert result.raw_answers == ('{"decision_type": "trade", ', good)
        assert (result.prompt_tokens, result.completion_tokens) == (2000, 400)
        repair = request_json(route, 1)["messages"]
        assert repair[-2]["tool_calls"][0]["id"] == "call_a"
        assert repair[-1]["role"] == "tool"
        assert repair[-1]["tool_call_id"] == "call_a"
        assert "not valid JSON" in repair[-1]["content"]
        assert result.request == request_json(route, 1)

    async def test_an_amount_the_log_cannot_keep_is_sent_back(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        # Stored with 18 decimals it would be 0 and break the log's positive price check.
        bad = json.dumps(
            decision_payload(order_type="limit", limit_price="1e-30", fraction_of_equity=0.05)
        )
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(200, json=openai_tool_call(bad)),
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.ok
        assert result.repaired is True
        repair = request_json(route, 1)["messages"][-1]["content"]
        assert "limit_price: has more than 18 decimal places" in repair

    async def test_schema_violation_is_sent_back_with_the_reason(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        # A trade without a side breaks the cross-field rule.
        bad = json.dumps(decision_payload(side=None))
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(200, json=openai_tool_call(bad)),
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.ok
        assert "a trade needs a side" in request_json(route, 1)["messages"][-1]["content"]

    async def test_symbol_outside_the_context_is_a_problem_to_repair(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(
                200, json=openai_tool_call(json.dumps(decision_payload(symbol="DOGE-USD")))
            ),
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.unwrap().symbol == "BTC-USD"
        assert (
            "DOGE-USD is not one of the agent's symbols"
            in request_json(route, 1)["messages"][-1]["content"]
        )

    async def test_malformed_twice_is_invalid_decision_with_both_raw_answers(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(200, json=openai_tool_call("not json at all")),
            httpx.Response(200, json=openai_tool_call('{"decision_type": "moon"}')),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.decision is None
        assert isinstance(result.error, InvalidDecisionError)
        assert result.error.raw_answers == ("not json at all", '{"decision_type": "moon"}')
        assert any("decision_type" in p for p in result.error.problems)
        assert result.raw_answers == result.error.raw_answers
        assert result.attempts == 2
        assert result.repaired is True
        assert result.cost == Decimal("0.00054")
        assert route.call_count == 2
        with pytest.raises(InvalidDecisionError):
            result.unwrap()

    async def test_answer_without_tool_call_asks_again_as_user_message(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(200, json=openai_content("I think you should buy.")),
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.ok
        messages = request_json(route, 1)["messages"]
        assert messages[-2] == {"role": "assistant", "content": "I think you should buy."}
        assert messages[-1]["role"] == "user"
        assert DECISION_TOOL_NAME in messages[-1]["content"]


class TestRetries:
    async def test_timeout_after_all_attempts_is_provider_timeout(
        self, router: respx.Router, make_provider: Any, sleep: RecordingSleep
    ) -> None:
        route = router.post(OPENAI_URL).mock(side_effect=httpx.ReadTimeout("slow"))

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, ProviderTimeoutError)
        assert result.attempts == 3
        assert route.call_count == 3
        assert sleep.delays == [0.5, 1.0]
        assert result.raw_answers == ()
        assert result.cost == Decimal(0)

    async def test_429_with_retry_after_then_success(
        self, router: respx.Router, make_provider: Any, sleep: RecordingSleep
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(
                429,
                headers={"retry-after": "7"},
                json={
                    "error": {
                        "message": "slow down",
                        "type": "requests",
                        "code": "rate_limit_exceeded",
                    }
                },
            ),
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.ok
        assert result.attempts == 2
        assert route.call_count == 2
        assert sleep.delays == [7.0]

    async def test_retry_after_ms_wins_over_backoff(
        self, router: respx.Router, make_provider: Any, sleep: RecordingSleep
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(
                503, headers={"retry-after-ms": "250"}, json={"error": {"message": "busy"}}
            ),
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.ok
        assert sleep.delays == [0.25]

    async def test_rate_limited_on_every_attempt(
        self, router: respx.Router, make_provider: Any, sleep: RecordingSleep
    ) -> None:
        router.post(OPENAI_URL).respond(429, json={"error": {"message": "slow down"}})

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, ProviderRateLimitedError)
        assert result.attempts == 3
        assert sleep.delays == [0.5, 1.0]

    async def test_out_of_quota_is_not_retried(
        self, router: respx.Router, make_provider: Any, sleep: RecordingSleep
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            429,
            json={
                "error": {
                    "message": "quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        )

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, ProviderRateLimitedError)
        assert route.call_count == 1
        assert sleep.delays == []

    async def test_server_errors_then_connection_refused_is_unavailable(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(500, json={"error": {"message": "boom"}}),
            httpx.Response(502, text="bad gateway"),
            httpx.ConnectError("refused"),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, ProviderUnavailableError)
        assert result.error.reason == "unavailable"
        assert result.attempts == 3

    async def test_rejected_key_is_a_config_error_without_retry(
        self, router: respx.Router, make_provider: Any, sleep: RecordingSleep
    ) -> None:
        route = router.post(OPENAI_URL).respond(401, json={"error": {"message": "bad key"}})

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, ProviderConfigError)
        assert result.error.reason == "key_rejected"
        assert "sk-test" not in result.error.message
        assert route.call_count == 1
        assert sleep.delays == []


class TestOpenAICompatibleServer:
    async def test_local_base_url_uses_response_format_and_no_tool_choice(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(f"{LOCAL_URL}/chat/completions").respond(
            json=openai_content(json.dumps(decision_payload()))
        )
        provider = make_provider(
            name="openai_compatible",
            base_url=LOCAL_URL,
            api_key="not-needed",
            structured_output=StructuredOutput.JSON_SCHEMA,
        )

        result = await provider.decide(make_context(), model="llama3.1")

        assert result.ok
        sent = request_json(route)
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["strict"] is True
        assert sent["response_format"]["json_schema"]["schema"]["additionalProperties"] is False
        assert "tool_choice" not in sent
        assert "tools" not in sent
        assert result.provider == "openai_compatible"
        # A local model is not in the price table: unknown, not free.
        assert result.cost is None

    async def test_fenced_json_from_a_local_model_is_accepted(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        fenced = "```json\n" + json.dumps(decision_payload()) + "\n```"
        router.post(f"{LOCAL_URL}/chat/completions").respond(json=openai_content(fenced))
        provider = make_provider(base_url=LOCAL_URL, structured_output=StructuredOutput.JSON_SCHEMA)

        result = await provider.decide(make_context(), model="llama3.1")

        assert result.ok
        assert result.repaired is False

    async def test_json_mode_repair_goes_back_as_user_message(
        self, router: respx.Router, make_provider: Any, prices: PriceTable
    ) -> None:
        route = router.post(f"{LOCAL_URL}/chat/completions")
        route.side_effect = [
            httpx.Response(200, json=openai_content("Sure! Here is my decision: buy")),
            httpx.Response(200, json=openai_content(json.dumps(decision_payload()))),
        ]
        provider = make_provider(
            base_url=LOCAL_URL,
            structured_output=StructuredOutput.JSON_SCHEMA,
            prices=PriceTable({"llama3.1": {"input": "0", "output": "0"}}),
        )

        result = await provider.decide(make_context(), model="llama3.1")

        assert result.ok
        assert result.repaired is True
        assert result.cost == Decimal(0)
        messages = request_json(route, 1)["messages"]
        assert messages[-2] == {"role": "assistant", "content": "Sure! Here is my decision: buy"}
        assert messages[-1]["role"] == "user"
        assert "not valid JSON" in messages[-1]["content"]


class TestOpenRouter:
    async def test_sends_attribution_headers_and_reads_reported_cost(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(f"{OPENROUTER_URL}/chat/completions").respond(
            json=openai_tool_call(json.dumps(decision_payload()), usage_extra={"cost": 0.00123})
        )
        provider = make_provider(
            name="openrouter",
            api_key="sk-or-test",
            base_url=OPENROUTER_URL,
            default_headers={"HTTP-Referer": "http://localhost", "X-Title": "Cival"},
            reported_cost=True,
        )

        result = await provider.decide(make_context(), model="anthropic/claude-sonnet-4-5")

        assert result.ok
        assert result.cost == Decimal("0.00123")
        headers = route.calls.last.request.headers
        assert headers["http-referer"] == "http://localhost"
        assert headers["x-title"] == "Cival"
        assert headers["authorization"] == "Bearer sk-or-test"
        assert request_json(route)["model"] == "anthropic/claude-sonnet-4-5"

    async def test_without_reported_cost_falls_back_to_the_price_table(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        router.post(f"{OPENROUTER_URL}/chat/completions").respond(
            json=openai_tool_call(
                json.dumps(decision_payload()), prompt_tokens=1000, completion_tokens=100
            )
        )
        provider = make_provider(name="openrouter", base_url=OPENROUTER_URL, reported_cost=True)

        result = await provider.decide(make_context(), model="openai/gpt-4o")

        # gpt-4o: 2.50 in / 10.00 out per million tokens.
        assert result.cost == Decimal("0.0035")


class TestTruncation:
    async def test_a_cut_off_answer_is_asked_again_with_the_cap_doubled(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(
                200, json=openai_tool_call('{"decision_type": "tr', finish_reason="length")
            ),
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
        ]

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert result.ok
        assert result.enlarged is True
        assert result.repaired is False
        assert route.call_count == 2
        assert request_json(route, 0)["max_completion_tokens"] == 2048
        assert request_json(route, 1)["max_completion_tokens"] == 4096
        # The retry is the same conversation, not a repair turn.
        assert request_json(route, 1)["messages"] == request_json(route, 0)["messages"]
        assert result.request == request_json(route, 1)
        assert result.raw_answers[0] == '{"decision_type": "tr'
        assert result.to_record()["enlarged"] is True

    async def test_cut_off_twice_fails_as_truncated(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call('{"decision_type": "tr', finish_reason="length")
        )

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, TruncatedAnswerError)
        assert result.error.reason == "truncated"
        assert "4096" in result.error.message
        assert route.call_count == 2
        assert result.repaired is False
        assert len(result.raw_answers) == 2

    async def test_the_cap_grows_at_most_to_its_ceiling(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(json=openai_tool_call("{", finish_reason="length"))

        result = await make_provider(max_output_tokens=12_000).decide(
            make_context(), model="gpt-4o-mini"
        )

        assert isinstance(result.error, TruncatedAnswerError)
        assert request_json(route, 1)["max_completion_tokens"] == 16_384

    async def test_json_mode_doubles_max_tokens(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(f"{LOCAL_URL}/chat/completions")
        route.side_effect = [
            httpx.Response(200, json=openai_content('{"deci', finish_reason="length")),
            httpx.Response(200, json=openai_content(json.dumps(decision_payload()))),
        ]
        provider = make_provider(base_url=LOCAL_URL, structured_output=StructuredOutput.JSON_SCHEMA)

        result = await provider.decide(make_context(), model="llama3.1")

        assert result.ok
        assert [request_json(route, i)["max_tokens"] for i in (0, 1)] == [2048, 4096]


class TestRefusal:
    async def test_a_refusal_ends_the_decision_without_repair(
        self, router: respx.Router, make_provider: Any, sleep: RecordingSleep
    ) -> None:
        """A refusal used to be sent back for a repair, as if it were malformed JSON."""
        route = router.post(OPENAI_URL).respond(json=openai_refusal("I can't help with trading."))

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, ModelRefusalError)
        assert result.error.reason == "refused"
        assert result.error.counts_against_breaker is False
        assert "I can't help with trading." in result.error.message
        assert result.raw_answers == ("I can't help with trading.",)
        assert route.call_count == 1
        assert result.repaired is False
        assert sleep.delays == []
        assert result.to_record()["error"]["reason"] == "refused"

    async def test_json_mode_refusal_is_a_refusal_too(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(f"{LOCAL_URL}/chat/completions").respond(json=openai_refusal("No."))
        provider = make_provider(base_url=LOCAL_URL, structured_output=StructuredOutput.JSON_SCHEMA)

        result = await provider.decide(make_context(), model="llama3.1")

        assert isinstance(result.error, ModelRefusalError)
        assert route.call_count == 1

    async def test_content_filter_is_a_refusal_with_its_own_reason(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_content("", finish_reason="content_filter")
        )

        result = await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert isinstance(result.error, ModelRefusalError)
        assert result.error.reason == "content_filter"
        assert route.call_count == 1


class TestReasoningModels:
    @pytest.mark.parametrize("model", ["o3", "o4-mini", "o1", "o3-2025-04-16"])
    async def test_o_series_gets_room_to_reason_and_only_what_it_accepts(
        self, router: respx.Router, make_provider: Any, model: str
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )

        result = await make_provider(reasoning_effort="low").decide(make_context(), model=model)

        assert result.ok
        sent = request_json(route)
        assert sent["max_completion_tokens"] == 25_000
        assert sent["reasoning_effort"] == "low"
        for rejected in ("max_tokens", "temperature", "top_p", "parallel_tool_calls"):
            assert rejected not in sent

    async def test_gpt_5_gets_reasoning_effort_and_no_parallel_calls(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )

        await make_provider(reasoning_effort="high").decide(make_context(), model="gpt-5.1")

        sent = request_json(route)
        assert sent["reasoning_effort"] == "high"
        assert sent["parallel_tool_calls"] is False
        assert sent["max_completion_tokens"] == 25_000
        assert "temperature" not in sent

    async def test_unset_effort_leaves_the_model_default(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )

        await make_provider().decide(make_context(), model="o3")

        assert "reasoning_effort" not in request_json(route)

    async def test_chat_models_get_no_reasoning_effort(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )

        await make_provider(reasoning_effort="high").decide(make_context(), model="gpt-4o-mini")

        sent = request_json(route)
        assert "reasoning_effort" not in sent
        assert sent["parallel_tool_calls"] is False
        assert sent["max_completion_tokens"] == 2048

    async def test_a_configured_cap_wins(self, router: respx.Router, make_provider: Any) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )

        await make_provider(max_output_tokens=8000).decide(make_context(), model="o4-mini")

        assert request_json(route)["max_completion_tokens"] == 8000

    async def test_reasoning_model_behind_a_gateway_gets_max_completion_tokens(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(f"{LOCAL_URL}/chat/completions").respond(
            json=openai_content(json.dumps(decision_payload()))
        )
        provider = make_provider(base_url=LOCAL_URL, structured_output=StructuredOutput.JSON_SCHEMA)

        await provider.decide(make_context(), model="o3")

        sent = request_json(route)
        assert sent["max_completion_tokens"] == 25_000
        assert "max_tokens" not in sent

    async def test_reasoning_cut_off_doubles_up_to_the_reasoning_ceiling(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(json=openai_tool_call("{", finish_reason="length"))

        await make_provider(max_output_tokens=60_000).decide(make_context(), model="o3")

        assert request_json(route, 1)["max_completion_tokens"] == 100_000


class TestCachedTokens:
    async def test_cached_prompt_tokens_cost_the_cached_input_rate(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        router.post(OPENAI_URL).respond(
            json=openai_tool_call(
                json.dumps(decision_payload()),
                prompt_tokens=1_000_000,
                completion_tokens=0,
                usage_extra={"prompt_tokens_details": {"cached_tokens": 400_000}},
            )
        )

        result = await make_provider().decide(make_context(), model="gpt-5.1")

        # gpt-5.1: 600k fresh at 1.25 + 400k cached at 0.125 per million.
        assert result.cost == Decimal("0.80")
        assert result.prompt_tokens == 1_000_000
        assert result.cached_prompt_tokens == 400_000
        assert result.to_record()["cached_prompt_tokens"] == 400_000

    async def test_without_a_cached_rate_cache_reads_cost_the_input_rate(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        router.post(OPENAI_URL).respond(
            json=openai_tool_call(
                json.dumps(decision_payload()),
                prompt_tokens=1_000_000,
                completion_tokens=0,
                usage_extra={"prompt_tokens_details": {"cached_tokens": 400_000}},
            )
        )
        provider = make_provider(prices=PriceTable({"my-model": {"input": "1", "output": "2"}}))

        result = await provider.decide(make_context(), model="my-model")

        assert result.cost == Decimal(1)


class TestStrictRouting:
    async def test_openrouter_requires_providers_that_honour_every_parameter(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(f"{OPENROUTER_URL}/chat/completions").respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )
        provider = make_provider(
            name="openrouter", base_url=OPENROUTER_URL, require_parameters=True
        )

        result = await provider.decide(make_context(), model="openai/gpt-4o-mini")

        sent = request_json(route)
        assert sent["provider"] == {"require_parameters": True}
        assert sent["parallel_tool_calls"] is False
        assert sent["tools"][0]["function"]["strict"] is True
        assert result.request == sent

    async def test_openai_gets_no_openrouter_fields(
        self, router: respx.Router, make_provider: Any
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )

        await make_provider().decide(make_context(), model="gpt-4o-mini")

        assert "provider" not in request_json(route)
