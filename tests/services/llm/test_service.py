"""LLMService: provider configuration, per-agent breakers, and decisions end to end with
the real SDKs against respx routes (see tests/services/llm/support.py for the bridge)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import pytest
import respx
from pydantic import SecretStr, ValidationError

from core.config import LLMSettings
from core.service_registry import HealthStatus
from models.enums import DecisionType
from services.llm.base import (
    InvalidDecisionError,
    ModelRefusalError,
    ProviderConfigError,
    ProviderUnavailableError,
    RetryPolicy,
)
from services.llm.breaker import BreakerState
from services.llm.pricing import PriceTable
from services.llm.providers.local import LocalProvider
from services.llm.providers.openai import OpenAIProvider, StructuredOutput
from services.llm.service import LLMService
from tests.services.llm.support import (
    ANTHROPIC_URL,
    OPENAI_URL,
    FakeClock,
    RecordingSleep,
    anthropic_tool_use,
    decision_payload,
    make_context,
    openai_content,
    openai_refusal,
    openai_tool_call,
    request_json,
)

OPENROUTER_URL = "https://openrouter.ai/api/v1/chat/completions"


def llm_settings(**values: Any) -> LLMSettings:
    """Settings from the given values only: no environment, no .env file."""
    fields: dict[str, Any] = {
        "openai_api_key": None,
        "openai_base_url": None,
        "anthropic_api_key": None,
        "anthropic_base_url": "https://api.anthropic.com",
        "openrouter_api_key": None,
        "openrouter_base_url": "https://openrouter.ai/api/v1",
        "openai_compatible_base_url": None,
        "openai_compatible_api_key": None,
        "llm_timeout_seconds": 5.0,
    }
    fields.update(values)
    for key in (
        "openai_api_key",
        "anthropic_api_key",
        "openrouter_api_key",
        "openai_compatible_api_key",
    ):
        if isinstance(fields[key], str):
            fields[key] = SecretStr(fields[key])
    return LLMSettings(_env_file=None, **fields)


@pytest.fixture
def make_service(http_client: httpx2.AsyncClient, clock: FakeClock, sleep: RecordingSleep) -> Any:
    def build(settings: LLMSettings | None = None, **options: Any) -> LLMService:
        options.setdefault("breaker_threshold", 2)
        options.setdefault("breaker_cooldown_seconds", 30.0)
        return LLMService(
            settings or llm_settings(),
            clock=clock,
            sleep=sleep,
            retry=RetryPolicy(max_attempts=3),
            http_client=http_client,
            **options,
        )

    return build


class TestConfiguration:
    def test_unknown_provider_is_a_config_error(self, make_service: Any) -> None:
        service = make_service()

        with pytest.raises(ProviderConfigError, match="unknown LLM provider 'gemini'") as caught:
            service.provider_for("gemini")
        assert caught.value.reason == "unknown_provider"

    @pytest.mark.parametrize(
        ("provider", "variable"),
        [
            ("openai", "OPENAI_API_KEY"),
            ("anthropic", "ANTHROPIC_API_KEY"),
            ("openrouter", "OPENROUTER_API_KEY"),
        ],
    )
    def test_missing_key_is_a_config_error_naming_the_variable(
        self, make_service: Any, provider: str, variable: str
    ) -> None:
        service = make_service()

        with pytest.raises(ProviderConfigError, match=variable) as caught:
            service.check_agent_config(provider, "some-model")
        assert caught.value.reason == "missing_key"
        assert caught.value.details["provider"] == provider

    def test_compatible_server_needs_a_base_url_not_a_key(self, make_service: Any) -> None:
        with pytest.raises(ProviderConfigError, match="OPENAI_COMPATIBLE_BASE_URL") as caught:
            make_service().check_agent_config("openai_compatible", "llama3.1")
        assert caught.value.reason == "missing_base_url"

        configured = make_service(
            llm_settings(openai_compatible_base_url="http://127.0.0.1:11434/v1")
        )
        configured.check_agent_config("openai_compatible", "llama3.1")

    def test_openai_base_url_no_longer_configures_the_compatible_provider(
        self, make_service: Any
    ) -> None:
        """OPENAI_BASE_URL pointed at Ollama used to serve openai_compatible agents too,
        and with them every openai agent and the OpenAI key."""
        service = make_service(llm_settings(openai_base_url="http://127.0.0.1:11434/v1"))

        with pytest.raises(ProviderConfigError) as caught:
            service.check_agent_config("openai_compatible", "llama3.1")

        assert caught.value.reason == "missing_base_url"
        assert "OPENAI_BASE_URL is for the openai provider only" in caught.value.message
        assert "openai_compatible" not in service.configured_providers()

    def test_provider_name_is_canonical_or_a_config_error(self, make_service: Any) -> None:
        service = make_service()

        assert service.provider_name(" OpenAI_Compatible ") == "openai_compatible"
        with pytest.raises(ProviderConfigError) as caught:
            service.provider_name("")
        assert caught.value.reason == "unknown_provider"

    def test_a_model_is_required_except_for_local(self, make_service: Any) -> None:
        service = make_service(llm_settings(anthropic_api_key="sk-ant"))

        with pytest.raises(ProviderConfigError, match="a model is required") as caught:
            service.check_agent_config("anthropic", " ")
        assert caught.value.reason == "missing_model"
        service.check_agent_config("local", "")

    def test_blank_key_counts_as_missing(self, make_service: Any) -> None:
        with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
            make_service(llm_settings(openai_api_key="  ")).provider_for("openai")

    def test_local_is_the_default_without_keys(self, make_service: Any) -> None:
        service = make_service()

        assert service.configured_providers() == ["local"]
        assert service.default_provider() == "local"
        assert service.default_model("local") == "rule-based"
        assert isinstance(service.provider_for("local"), LocalProvider)

    def test_a_configured_key_becomes_the_default(self, make_service: Any) -> None:
        service = make_service(llm_settings(anthropic_api_key="sk-ant", openrouter_api_key="sk-or"))

        assert service.configured_providers() == ["local", "anthropic", "openrouter"]
        assert service.default_provider() == "anthropic"

    def test_providers_are_built_once_and_names_are_case_insensitive(
        self, make_service: Any
    ) -> None:
        service = make_service(llm_settings(openai_api_key="sk-test"))

        assert service.provider_for("openai") is service.provider_for(" OpenAI ")

    def test_structured_output_follows_the_base_url(self, make_service: Any) -> None:
        plain = make_service(llm_settings(openai_api_key="sk-test")).provider_for("openai")
        gateway = make_service(
            llm_settings(openai_api_key="sk-test", openai_base_url="http://127.0.0.1:8001/v1")
        ).provider_for("openai")
        compatible = make_service(
            llm_settings(openai_compatible_base_url="http://127.0.0.1:11434/v1")
        ).provider_for("openai_compatible")

        assert isinstance(plain, OpenAIProvider)
        assert plain.structured_output is StructuredOutput.TOOL_CALL
        assert isinstance(gateway, OpenAIProvider)
        assert gateway.structured_output is StructuredOutput.JSON_SCHEMA
        assert isinstance(compatible, OpenAIProvider)
        assert compatible.structured_output is StructuredOutput.JSON_SCHEMA

    async def test_decide_returns_a_config_error_instead_of_raising(
        self, make_service: Any
    ) -> None:
        result = await make_service().decide(
            "agent-1", provider="openai", model="gpt-4o-mini", context=make_context()
        )

        assert isinstance(result.error, ProviderConfigError)
        assert result.attempts == 0


class TestDecide:
    async def test_local_end_to_end_without_keys(
        self, make_service: Any, router: respx.Router
    ) -> None:
        service = make_service()

        result = await service.decide(
            "agent-1", provider="local", model="rule-based", context=make_context()
        )

        assert result.unwrap().decision_type is DecisionType.HOLD
        assert result.cost == Decimal(0)
        assert router.calls.call_count == 0

    async def test_openai_through_the_service(
        self, make_service: Any, router: respx.Router
    ) -> None:
        router.post(OPENAI_URL).respond(json=openai_tool_call(json.dumps(decision_payload())))
        service = make_service(llm_settings(openai_api_key="sk-test"))

        result = await service.decide(
            "agent-1", provider="openai", model="gpt-4o-mini", context=make_context()
        )

        assert result.ok
        assert result.cost == Decimal("0.00027")

    async def test_anthropic_through_the_service(
        self, make_service: Any, router: respx.Router
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        service = make_service(llm_settings(anthropic_api_key="sk-ant-test"))

        result = await service.decide(
            "agent-1", provider="anthropic", model="claude-haiku-4-5", context=make_context()
        )

        assert result.ok
        assert request_json(route)["tool_choice"]["type"] == "tool"

    async def test_openrouter_uses_its_base_url_headers_and_reported_cost(
        self, make_service: Any, router: respx.Router
    ) -> None:
        route = router.post(OPENROUTER_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()), usage_extra={"cost": "0.0042"})
        )
        service = make_service(
            llm_settings(openrouter_api_key="sk-or-test"), app_url="https://cival.example"
        )

        result = await service.decide(
            "agent-1", provider="openrouter", model="openai/gpt-4o", context=make_context()
        )

        assert result.cost == Decimal("0.0042")
        headers = route.calls.last.request.headers
        assert headers["http-referer"] == "https://cival.example"
        assert headers["x-title"] == "Cival"
        assert headers["authorization"] == "Bearer sk-or-test"

    async def test_compatible_server_gets_response_format(
        self, make_service: Any, router: respx.Router
    ) -> None:
        route = router.post("http://127.0.0.1:11434/v1/chat/completions").respond(
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "llama3.1",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": json.dumps(decision_payload())},
                    }
                ],
            }
        )
        service = make_service(llm_settings(openai_compatible_base_url="http://127.0.0.1:11434/v1"))

        result = await service.decide(
            "agent-1", provider="openai_compatible", model="llama3.1", context=make_context()
        )

        assert result.ok
        sent = request_json(route)
        assert sent["response_format"]["type"] == "json_schema"
        assert "tool_choice" not in sent
        # No usage reported and no price: tokens and cost are unknown.
        assert result.prompt_tokens is None
        assert result.cost is None


COMPATIBLE_URL = "http://127.0.0.1:11434/v1/chat/completions"


def compatible_answer() -> dict[str, Any]:
    return openai_content(json.dumps(decision_payload()))


class TestWhereEachProviderSends:
    """Which URL and which key each provider's requests carry, through the real SDKs."""

    async def decide(self, service: LLMService, provider: str, model: str = "m") -> Any:
        return await service.decide(
            f"agent-{provider}", provider=provider, model=model, context=make_context()
        )

    async def test_the_openai_key_goes_to_openai_only(
        self, make_service: Any, router: respx.Router
    ) -> None:
        openai_route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )
        compatible_route = router.post(COMPATIBLE_URL).respond(json=compatible_answer())
        service = make_service(
            llm_settings(
                openai_api_key="sk-openai-secret",
                openai_compatible_base_url="http://127.0.0.1:11434/v1",
            )
        )

        assert (await self.decide(service, "openai_compatible")).ok
        assert (await self.decide(service, "openai")).ok

        assert compatible_route.call_count == 1
        sent = compatible_route.calls.last.request
        assert sent.headers["authorization"] == "Bearer not-needed"
        assert "sk-openai-secret" not in str(sent.headers)
        assert openai_route.call_count == 1
        assert openai_route.calls.last.request.headers["authorization"] == (
            "Bearer sk-openai-secret"
        )

    async def test_the_compatible_server_gets_its_own_key_when_configured(
        self, make_service: Any, router: respx.Router
    ) -> None:
        route = router.post(COMPATIBLE_URL).respond(json=compatible_answer())
        service = make_service(
            llm_settings(
                openai_api_key="sk-openai-secret",
                openai_compatible_base_url="http://127.0.0.1:11434/v1",
                openai_compatible_api_key="vllm-token",
            )
        )

        assert (await self.decide(service, "openai_compatible")).ok

        assert route.calls.last.request.headers["authorization"] == "Bearer vllm-token"

    async def test_openai_base_url_moves_only_openai_agents(
        self, make_service: Any, router: respx.Router
    ) -> None:
        gateway = router.post("https://gateway.example/openai/v1/chat/completions").respond(
            json=compatible_answer()
        )
        compatible_route = router.post(COMPATIBLE_URL).respond(json=compatible_answer())
        service = make_service(
            llm_settings(
                openai_api_key="sk-openai-secret",
                openai_base_url="https://gateway.example/openai/v1",
                openai_compatible_base_url="http://127.0.0.1:11434/v1",
            )
        )

        assert (await self.decide(service, "openai")).ok
        assert (await self.decide(service, "openai_compatible")).ok

        assert gateway.call_count == 1
        assert gateway.calls.last.request.headers["authorization"] == "Bearer sk-openai-secret"
        assert compatible_route.call_count == 1
        assert "sk-openai-secret" not in str(compatible_route.calls.last.request.headers)

    async def test_openai_account_headers_stay_with_openai(
        self, make_service: Any, router: respx.Router, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The SDK reads these from the environment by itself.
        monkeypatch.setenv("OPENAI_ORG_ID", "org-secret")
        monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-secret")
        openai_route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )
        compatible_route = router.post(COMPATIBLE_URL).respond(json=compatible_answer())
        openrouter_route = router.post(OPENROUTER_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )
        service = make_service(
            llm_settings(
                openai_api_key="sk-openai",
                openrouter_api_key="sk-or",
                openai_compatible_base_url="http://127.0.0.1:11434/v1",
            )
        )

        for provider in ("openai", "openai_compatible", "openrouter"):
            assert (await self.decide(service, provider)).ok

        assert openai_route.calls.last.request.headers["openai-organization"] == "org-secret"
        assert openai_route.calls.last.request.headers["openai-project"] == "proj-secret"
        for route in (compatible_route, openrouter_route):
            headers = route.calls.last.request.headers
            assert "openai-organization" not in headers
            assert "openai-project" not in headers

    async def test_anthropic_base_url_from_the_environment_is_honoured(
        self,
        router: respx.Router,
        http_client: httpx2.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://gateway.example/anthropic")
        default = router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        gateway = router.post("https://gateway.example/anthropic/v1/messages").respond(
            json=anthropic_tool_use(decision_payload())
        )
        service = LLMService(LLMSettings(_env_file=None), http_client=http_client)

        assert (await self.decide(service, "anthropic", "claude-haiku-4-5")).ok

        assert gateway.call_count == 1
        assert gateway.calls.last.request.headers["authorization"] == "Bearer sk-ant-test"
        assert default.call_count == 0

    async def test_anthropic_defaults_to_its_api(
        self, make_service: Any, router: respx.Router
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        service = make_service(llm_settings(anthropic_api_key="sk-ant-test"))

        assert (await self.decide(service, "anthropic", "claude-haiku-4-5")).ok

        assert route.call_count == 1


class TestCircuitBreaker:
    async def test_server_errors_open_the_breaker_then_half_open_after_cooldown(
        self, make_service: Any, router: respx.Router, clock: FakeClock
    ) -> None:
        route = router.post(OPENAI_URL).respond(500, json={"error": {"message": "down"}})
        service = make_service(llm_settings(openai_api_key="sk-test"))
        context = make_context()

        async def decide() -> Any:
            return await service.decide(
                "agent-1", provider="openai", model="gpt-4o", context=context
            )

        for _ in range(2):
            failed = await decide()
            assert isinstance(failed.error, ProviderUnavailableError)
            assert failed.error.reason == "unavailable"
        assert route.call_count == 6
        assert service.breaker_state("openai") is BreakerState.OPEN

        refused = await decide()

        assert isinstance(refused.error, ProviderUnavailableError)
        assert refused.error.reason == "circuit_open"
        assert "circuit open" in refused.error.message
        assert refused.attempts == 0
        assert route.call_count == 6
        health = await service.health()
        assert health.status is HealthStatus.DEGRADED
        assert health.data["open_breakers"] == 1

        clock.advance(30)
        assert service.breaker_state("openai") is BreakerState.HALF_OPEN
        route.respond(json=openai_tool_call(json.dumps(decision_payload())))

        recovered = await decide()

        assert recovered.ok
        assert route.call_count == 7
        assert service.breaker_state("openai") is BreakerState.CLOSED
        assert (await service.health()).status is HealthStatus.HEALTHY

    async def test_failed_trial_reopens(
        self, make_service: Any, router: respx.Router, clock: FakeClock
    ) -> None:
        route = router.post(OPENAI_URL).mock(side_effect=httpx.ConnectError("refused"))
        service = make_service(llm_settings(openai_api_key="sk-test"), breaker_threshold=1)
        context = make_context()

        await service.decide("agent-1", provider="openai", model="gpt-4o", context=context)
        clock.advance(30)
        await service.decide("agent-1", provider="openai", model="gpt-4o", context=context)

        assert route.call_count == 6
        assert service.breaker_state("openai") is BreakerState.OPEN

    async def test_one_outage_opens_one_breaker_for_every_agent(
        self, make_service: Any, router: respx.Router
    ) -> None:
        """The breaker used to be per agent: an outage cost every agent its own
        threshold of failed decisions (x3 requests each) before it stopped asking."""
        route = router.post(OPENAI_URL).respond(503, json={"error": {"message": "down"}})
        service = make_service(llm_settings(openai_api_key="sk-test"), breaker_threshold=1)

        await service.decide("agent-a", provider="openai", model="gpt-4o", context=make_context())
        other = await service.decide(
            "agent-b", provider="openai", model="gpt-4o-mini", context=make_context()
        )

        assert service.breaker_state("openai") is BreakerState.OPEN
        assert isinstance(other.error, ProviderUnavailableError)
        assert other.error.reason == "circuit_open"
        assert route.call_count == 3
        assert service.breaker_state("anthropic") is BreakerState.CLOSED
        local = await service.decide(
            "agent-b", provider="local", model="rule-based", context=make_context()
        )
        assert local.ok

    async def test_health_shows_the_breaker_of_each_provider(
        self, make_service: Any, router: respx.Router
    ) -> None:
        router.post(OPENAI_URL).respond(503, json={"error": {"message": "down"}})
        service = make_service(llm_settings(openai_api_key="sk-test"), breaker_threshold=1)

        await service.decide("agent-a", provider="openai", model="gpt-4o", context=make_context())
        health = await service.health()

        assert health.status is HealthStatus.DEGRADED
        assert "openai" in health.detail
        assert health.data["breakers"] == {
            "local": "closed",
            "openai": "open",
            "anthropic": "closed",
            "openrouter": "closed",
            "openai_compatible": "closed",
        }

    async def test_invalid_decisions_do_not_open_the_breaker(
        self, make_service: Any, router: respx.Router
    ) -> None:
        router.post(OPENAI_URL).respond(json=openai_tool_call("{nope"))
        service = make_service(llm_settings(openai_api_key="sk-test"), breaker_threshold=1)

        result = await service.decide(
            "agent-1", provider="openai", model="gpt-4o", context=make_context()
        )

        assert isinstance(result.error, InvalidDecisionError)
        assert service.breaker_state("openai") is BreakerState.CLOSED


class TestLifecycle:
    async def test_health_lists_configured_providers(self, make_service: Any) -> None:
        service = make_service(llm_settings(openai_api_key="sk-test"))
        await service.start()

        health = await service.health()

        assert health.status is HealthStatus.HEALTHY
        assert health.data["providers"] == {
            "local": True,
            "openai": True,
            "anthropic": False,
            "openrouter": False,
            "openai_compatible": False,
        }
        assert health.data["default_provider"] == "openai"
        assert "sk-test" not in json.dumps(health.data)
        await service.stop()

    async def test_stop_leaves_an_injected_http_client_open(
        self, make_service: Any, http_client: httpx2.AsyncClient
    ) -> None:
        service = make_service(llm_settings(openai_api_key="sk-test"))
        service.provider_for("openai")

        await service.stop()

        assert not http_client.is_closed

    async def test_stop_closes_the_clients_it_owns(self, clock: FakeClock) -> None:
        service = LLMService(llm_settings(anthropic_api_key="sk-ant"), clock=clock)
        provider = service.provider_for("anthropic")

        await service.stop()

        assert provider._client.is_closed()  # type: ignore[attr-defined]
        assert service.provider_for("anthropic") is not provider


def test_cost_known_only_where_a_price_or_a_reported_cost_exists() -> None:
    service = LLMService(llm_settings(), prices={"my-local-llama": {"input": "0", "output": "0"}})
    assert service.cost_known("local", "rules")
    assert service.cost_known("openrouter", "some/unlisted-model")  # reports what it charged
    assert service.cost_known("openai", "gpt-4o-mini-2024-07-18")  # a dated snapshot
    assert not service.cost_known("openai", "a-model-nobody-priced")
    assert not service.cost_known("openai_compatible", "llama3.1")
    assert service.cost_known("openai_compatible", "my-local-llama")  # priced in LLM_PRICES
    with pytest.raises(ProviderConfigError):
        service.cost_known("nonsense", "x")


class TestFallbacks:
    async def test_an_outage_moves_on_to_the_next_provider(
        self, make_service: Any, router: respx.Router
    ) -> None:
        openai_route = router.post(OPENAI_URL).respond(503, json={"error": {"message": "down"}})
        anthropic_route = router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(decision_payload())
        )
        service = make_service(llm_settings(openai_api_key="sk", anthropic_api_key="sk-ant"))

        result = await service.decide(
            "agent-1",
            provider="openai",
            model="gpt-4o-mini",
            context=make_context(),
            fallbacks=[("anthropic", "claude-haiku-4-5")],
        )

        assert result.ok
        assert (result.provider, result.model) == ("anthropic", "claude-haiku-4-5")
        assert openai_route.call_count == 3
        assert anthropic_route.call_count == 1
        assert result.attempts == 4
        [skipped] = result.fallback_from
        assert skipped["provider"] == "openai"
        assert skipped["model"] == "gpt-4o-mini"
        assert skipped["reason"] == "unavailable"
        assert skipped["attempts"] == 3
        assert result.to_record()["fallback_from"] == [skipped]
        json.dumps(result.to_record())

    async def test_an_open_breaker_is_skipped_without_a_request(
        self, make_service: Any, router: respx.Router
    ) -> None:
        openai_route = router.post(OPENAI_URL).respond(503, json={"error": {"message": "down"}})
        router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        service = make_service(
            llm_settings(openai_api_key="sk", anthropic_api_key="sk-ant"), breaker_threshold=1
        )
        await service.decide("agent-1", provider="openai", model="gpt-4o", context=make_context())
        assert openai_route.call_count == 3

        result = await service.decide(
            "agent-2",
            provider="openai",
            model="gpt-4o",
            context=make_context(),
            fallbacks=[("anthropic", "claude-haiku-4-5")],
        )

        assert result.ok
        assert openai_route.call_count == 3
        assert result.fallback_from[0]["reason"] == "circuit_open"
        assert result.fallback_from[0]["attempts"] == 0

    async def test_a_provider_not_configured_is_skipped(
        self, make_service: Any, router: respx.Router
    ) -> None:
        router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        service = make_service(llm_settings(anthropic_api_key="sk-ant"))

        result = await service.decide(
            "agent-1",
            provider="openai",
            model="gpt-4o",
            context=make_context(),
            fallbacks=[("anthropic", "claude-haiku-4-5"), ("local", "rule-based")],
        )

        assert result.provider == "anthropic"
        assert [(f["provider"], f["reason"]) for f in result.fallback_from] == [
            ("openai", "missing_key")
        ]
        assert result.cost == Decimal("0.0027")

    async def test_an_invalid_answer_does_not_fall_back(
        self, make_service: Any, router: respx.Router
    ) -> None:
        router.post(OPENAI_URL).respond(json=openai_tool_call("{nope"))
        anthropic_route = router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(decision_payload())
        )
        service = make_service(llm_settings(openai_api_key="sk", anthropic_api_key="sk-ant"))

        result = await service.decide(
            "agent-1",
            provider="openai",
            model="gpt-4o",
            context=make_context(),
            fallbacks=[("anthropic", "claude-haiku-4-5")],
        )

        assert isinstance(result.error, InvalidDecisionError)
        assert result.provider == "openai"
        assert result.fallback_from == []
        assert anthropic_route.call_count == 0

    async def test_a_refusal_does_not_fall_back_nor_open_the_breaker(
        self, make_service: Any, router: respx.Router
    ) -> None:
        router.post(OPENAI_URL).respond(json=openai_refusal("I can't."))
        anthropic_route = router.post(ANTHROPIC_URL).respond(
            json=anthropic_tool_use(decision_payload())
        )
        service = make_service(
            llm_settings(openai_api_key="sk", anthropic_api_key="sk-ant"), breaker_threshold=1
        )

        result = await service.decide(
            "agent-1",
            provider="openai",
            model="gpt-4o",
            context=make_context(),
            fallbacks=[("anthropic", "claude-haiku-4-5")],
        )

        assert isinstance(result.error, ModelRefusalError)
        assert result.raw_answers == ("I can't.",)
        assert anthropic_route.call_count == 0
        assert service.breaker_state("openai") is BreakerState.CLOSED

    async def test_when_every_provider_fails_the_last_error_is_returned(
        self, make_service: Any, router: respx.Router
    ) -> None:
        router.post(OPENAI_URL).respond(503, json={"error": {"message": "down"}})
        service = make_service(llm_settings(openai_api_key="sk"))

        result = await service.decide(
            "agent-1",
            provider="openai",
            model="gpt-4o",
            context=make_context(),
            fallbacks=[("anthropic", "claude-haiku-4-5")],
        )

        assert isinstance(result.error, ProviderConfigError)
        assert result.provider == "anthropic"
        assert result.fallback_from[0]["reason"] == "unavailable"


class TestModelSettings:
    async def test_reasoning_effort_and_cap_reach_the_request(
        self, make_service: Any, router: respx.Router
    ) -> None:
        route = router.post(OPENAI_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )
        service = make_service(
            llm_settings(
                openai_api_key="sk", llm_reasoning_effort="minimal", llm_max_completion_tokens=9000
            )
        )

        await service.decide("agent-1", provider="openai", model="o4-mini", context=make_context())

        sent = request_json(route)
        assert sent["reasoning_effort"] == "minimal"
        assert sent["max_completion_tokens"] == 9000

    async def test_the_cap_reaches_anthropic(self, make_service: Any, router: respx.Router) -> None:
        route = router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        service = make_service(llm_settings(anthropic_api_key="sk", llm_max_completion_tokens=3000))

        await service.decide(
            "agent-1", provider="anthropic", model="claude-haiku-4-5", context=make_context()
        )

        assert request_json(route)["max_tokens"] == 3000

    async def test_openrouter_requests_require_parameters(
        self, make_service: Any, router: respx.Router
    ) -> None:
        route = router.post(OPENROUTER_URL).respond(
            json=openai_tool_call(json.dumps(decision_payload()))
        )
        service = make_service(llm_settings(openrouter_api_key="sk-or"))

        await service.decide(
            "agent-1", provider="openrouter", model="openai/o3", context=make_context()
        )

        sent = request_json(route)
        assert sent["provider"] == {"require_parameters": True}
        assert "parallel_tool_calls" not in sent

    def test_blank_settings_are_unset(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LLM_REASONING_EFFORT", "")
        monkeypatch.setenv("LLM_MAX_COMPLETION_TOKENS", " ")

        settings = LLMSettings(_env_file=None)

        assert settings.llm_reasoning_effort is None
        assert settings.llm_max_completion_tokens is None

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("LLM_REASONING_EFFORT", "extreme"),
            ("LLM_MAX_COMPLETION_TOKENS", "10"),
            ("LLM_PRICES", '{"m": {"input": "1"}}'),
            ("LLM_PRICES", '{"m": {"input": "1", "output": "1", "cached_input": "-1"}}'),
        ],
    )
    def test_bad_settings_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
    ) -> None:
        monkeypatch.setenv(variable, value)

        with pytest.raises(ValidationError):
            LLMSettings(_env_file=None)

    def test_prices_take_a_cached_input_rate(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "LLM_PRICES", '{"my-model": {"input": "1", "output": "2", "cached_input": "0.1"}}'
        )
        settings = LLMSettings(_env_file=None)
        service = LLMService(settings, prices=settings.llm_prices)

        assert service.cost_known("openai", "my-model")
        price = PriceTable(settings.llm_prices).price("my-model")
        assert price is not None
        assert price.cached_input_per_million == Decimal("0.1")
