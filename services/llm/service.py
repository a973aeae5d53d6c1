"""The LLM layer's front door: which providers are configured, one provider per name
built on first use, a circuit breaker per provider around every call, and fallbacks.

Provider names (as agents store them): `local` (built-in rules, always available),
`openai` (OPENAI_API_KEY; OPENAI_BASE_URL optional), `anthropic` (ANTHROPIC_API_KEY;
ANTHROPIC_BASE_URL optional), `openrouter` (OPENROUTER_API_KEY; OPENROUTER_BASE_URL) and
`openai_compatible` (OPENAI_COMPATIBLE_BASE_URL of an Ollama/vLLM/LM Studio server;
OPENAI_COMPATIBLE_API_KEY only if the server wants one).

Every provider gets its own key and URL and nothing else: OPENAI_API_KEY goes to the
`openai` provider's URL only, never to an OpenRouter or OpenAI-compatible server.

The breaker is per provider: an outage opens it after `breaker_threshold` failed
decisions, whichever agents made them, and from then on every agent on that provider
is refused at once (reason `circuit_open`) until the cooldown lets one trial through.
A decision may name fallbacks: `(provider, model)` pairs tried in order when the one
before could not answer (open breaker, unavailable, timed out or rate limited after
its retries, not configured or its key rejected); never after an answer, even an
invalid one, a refusal or a truncated one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx2
import structlog
from pydantic import SecretStr

from core.config import LLMSettings
from core.service_registry import ServiceHealth
from models.decisions import AgentContext
from services.llm.base import (
    Clock,
    LLMProvider,
    ProviderConfigError,
    ProviderResult,
    ProviderUnavailableError,
    RetryPolicy,
    Sleep,
)
from services.llm.breaker import BreakerBoard, BreakerState
from services.llm.pricing import PriceTable
from services.llm.providers.local import LOCAL_MODEL, LocalProvider

log = structlog.get_logger(__name__)


class ProviderName(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OPENROUTER = "openrouter"
    OPENAI_COMPATIBLE = "openai_compatible"


DEFAULT_MODELS: Mapping[ProviderName, str] = {
    ProviderName.LOCAL: LOCAL_MODEL,
    ProviderName.OPENAI: "gpt-4o-mini",
    ProviderName.ANTHROPIC: "claude-haiku-4-5",
    ProviderName.OPENROUTER: "openai/gpt-4o-mini",
    ProviderName.OPENAI_COMPATIBLE: "llama3.1",
}

# Sent as the bearer token to local servers that do not check one; the SDK needs some key.
_NO_KEY = "not-needed"


def _secret(value: SecretStr | None) -> str | None:
    if value is None:
        return None
    return value.get_secret_value().strip() or None


class LLMService:
    def __init__(
        self,
        settings: LLMSettings,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        prices: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        breaker_threshold: int = 5,
        breaker_cooldown_seconds: float = 60.0,
        http_client: httpx2.AsyncClient | None = None,
        app_url: str = "http://localhost",
        app_title: str = "Cival",
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._prices = PriceTable(prices)
        self._retry = retry or RetryPolicy()
        self._breakers = BreakerBoard(
            failure_threshold=breaker_threshold,
            cooldown_seconds=breaker_cooldown_seconds,
            clock=clock,
        )
        self._http_client = http_client
        self._app_url = app_url
        self._app_title = app_title
        self._providers: dict[ProviderName, LLMProvider] = {}

    async def start(self) -> None:
        log.info("llm_service_started", providers=self.configured_providers())

    async def stop(self) -> None:
        providers, self._providers = self._providers, {}
        for provider in providers.values():
            await provider.close()

    async def health(self) -> ServiceHealth:
        """Healthy unless some provider's breaker is open, which makes it degraded;
        `breakers` has each provider's state (closed until it has failed)."""
        states = {name.value: self._breakers.get(name.value).state for name in ProviderName}
        open_names = [name for name, state in states.items() if state is BreakerState.OPEN]
        half_open = sum(1 for state in states.values() if state is BreakerState.HALF_OPEN)
        data: dict[str, Any] = {
            "providers": {name.value: self._problem(name) is None for name in ProviderName},
            "default_provider": self.default_provider(),
            "breakers": {name: state.value for name, state in states.items()},
            "open_breakers": len(open_names),
            "half_open_breakers": half_open,
        }
        if open_names:
            return ServiceHealth.degraded(f"circuit open for {', '.join(open_names)}", **data)
        return ServiceHealth.healthy("ok", **data)

    def configured_providers(self) -> list[str]:
        return [name.value for name in ProviderName if self._problem(name) is None]

    def default_provider(self) -> str:
        """The first configured of openai, anthropic, openrouter, openai_compatible; else local."""
        for name in ProviderName:
            if name is not ProviderName.LOCAL and self._problem(name) is None:
                return name.value
        return ProviderName.LOCAL.value

    def default_model(self, provider: str) -> str:
        return DEFAULT_MODELS[self._resolve(provider)]

    def provider_name(self, provider: str) -> str:
        """The provider's canonical name (' OpenAI ' -> 'openai'); ProviderConfigError
        (reason unknown_provider) for a name that is none of them."""
        return self._resolve(provider).value

    def check_agent_config(self, provider: str, model: str) -> None:
        """Raises ProviderConfigError (with `reason`) when an agent could not decide with
        this provider and model: unknown provider, missing key or base URL, no model."""
        name = self._resolve(provider)
        problem = self._problem(name)
        if problem is not None:
            raise ProviderConfigError(problem[1], provider=name.value, reason=problem[0])
        if name is not ProviderName.LOCAL and not model.strip():
            raise ProviderConfigError(
                f"a model is required for provider {name.value}",
                provider=name.value,
                reason="missing_model",
            )

    def cost_known(self, provider: str, model: str) -> bool:
        """Whether a call to `model` on `provider` has a known cost: the local rules are
        free, OpenRouter reports what it charged, and every other model must be in the
        price table (the built-in list prices or LLM_PRICES). ProviderConfigError for an
        unknown provider name."""
        name = self._resolve(provider)
        if name in (ProviderName.LOCAL, ProviderName.OPENROUTER):
            return True
        return self._prices.price(model) is not None

    def provider_for(self, provider: str) -> LLMProvider:
        """The provider by name, built on first use; ProviderConfigError if it cannot be."""
        name = self._resolve(provider)
        problem = self._problem(name)
        if problem is not None:
            raise ProviderConfigError(problem[1], provider=name.value, reason=problem[0])
        built = self._providers.get(name)
        if built is None:
            built = self._build(name)
            self._providers[name] = built
        return built

    async def decide(
        self,
        agent_key: str,
        *,
        provider: str,
        model: str,
        context: AgentContext,
        fallbacks: Sequence[tuple[str, str]] = (),
    ) -> ProviderResult:
        """One decision for an agent: `(provider, model)`, then each fallback in order
        while the one before could not answer (see the module docstring); an open
        breaker refuses at once without a request. The result names who answered (or
        the last one tried) and lists the ones skipped in `fallback_from`, their cost
        and tokens included in its totals. Never raises a ProviderError: failures come
        back in `result.error`."""
        chain = [(provider, model), *fallbacks]
        skipped: list[ProviderResult] = []
        for index, (name, chosen) in enumerate(chain):
            result = await self._decide_once(agent_key, name, chosen, context)
            error = result.error
            if error is None or not error.falls_back or index == len(chain) - 1:
                return _with_skipped(result, skipped)
            log.info(
                "llm_fallback",
                agent=agent_key,
                provider=result.provider,
                model=chosen,
                reason=error.reason,
                next_provider=chain[index + 1][0],
            )
            skipped.append(result)
        raise AssertionError("unreachable: the chain is never empty")

    async def _decide_once(
        self, agent_key: str, provider: str, model: str, context: AgentContext
    ) -> ProviderResult:
        try:
            impl = self.provider_for(provider)
        except ProviderConfigError as e:
            return ProviderResult(provider=provider, model=model, error=e)
        breaker = self._breakers.get(impl.name)
        if not breaker.allow():
            error = ProviderUnavailableError(
                f"circuit open for provider {impl.name} after {breaker.consecutive_failures} "
                f"consecutive failures; next try in {breaker.retry_in():.0f}s",
                provider=impl.name,
                reason="circuit_open",
                details={"retry_in_seconds": round(breaker.retry_in(), 3)},
            )
            return ProviderResult(provider=impl.name, model=model, error=error)
        try:
            result = await impl.decide(context, model=model)
        except BaseException:
            breaker.abandon()
            raise
        if result.error is not None and result.error.counts_against_breaker:
            breaker.record_failure()
            log.info("llm_provider_failure", agent=agent_key, provider=impl.name)
        else:
            breaker.record_success()
        return result

    def breaker_state(self, provider: str) -> BreakerState:
        """The circuit state of a provider (by name, as agents store it)."""
        return self._breakers.get(self._resolve(provider).value).state

    def _resolve(self, provider: str) -> ProviderName:
        try:
            return ProviderName(provider.strip().lower())
        except ValueError:
            known = ", ".join(n.value for n in ProviderName)
            raise ProviderConfigError(
                f"unknown LLM provider {provider!r}; expected one of {known}",
                provider=provider,
                reason="unknown_provider",
            ) from None

    def _problem(self, name: ProviderName) -> tuple[str, str] | None:
        """(reason, message) of why `name` cannot be used, or None."""
        s = self._settings
        if name is ProviderName.OPENAI and _secret(s.openai_api_key) is None:
            return "missing_key", "OPENAI_API_KEY is not set"
        if name is ProviderName.ANTHROPIC and _secret(s.anthropic_api_key) is None:
            return "missing_key", "ANTHROPIC_API_KEY is not set"
        if name is ProviderName.OPENROUTER and _secret(s.openrouter_api_key) is None:
            return "missing_key", "OPENROUTER_API_KEY is not set"
        if name is ProviderName.OPENAI_COMPATIBLE and not s.openai_compatible_base_url:
            return (
                "missing_base_url",
                "OPENAI_COMPATIBLE_BASE_URL is not set (the server's /v1 URL, e.g. "
                "http://127.0.0.1:11434/v1); OPENAI_BASE_URL is for the openai provider only",
            )
        return None

    def _build(self, name: ProviderName) -> LLMProvider:
        s = self._settings
        common: dict[str, Any] = {
            "timeout": s.llm_timeout_seconds,
            "max_output_tokens": s.llm_max_completion_tokens,
            "prices": self._prices,
            "retry": self._retry,
            "sleep": self._sleep,
            "clock": self._clock,
            "http_client": self._http_client,
        }
        if name is ProviderName.LOCAL:
            return LocalProvider(clock=self._clock)
        # Imported here, not at the top: the two SDKs take seconds and tens of MiB to
        # import, and a default install (local provider only) never needs them.
        from services.llm.providers.anthropic import AnthropicProvider
        from services.llm.providers.openai import OPENAI_BASE_URL, OpenAIProvider, StructuredOutput

        if name is ProviderName.ANTHROPIC:
            return AnthropicProvider(
                api_key=_secret(s.anthropic_api_key) or "", base_url=s.anthropic_base_url, **common
            )
        if name is ProviderName.OPENROUTER:
            return OpenAIProvider(
                name=name.value,
                api_key=_secret(s.openrouter_api_key) or "",
                base_url=s.openrouter_base_url,
                structured_output=StructuredOutput.TOOL_CALL,
                default_headers={
                    "HTTP-Referer": self._app_url,
                    "X-Title": self._app_title,
                    "X-OpenRouter-Title": self._app_title,
                },
                reported_cost=True,
                reasoning_effort=s.llm_reasoning_effort,
                require_parameters=True,
                **common,
            )
        if name is ProviderName.OPENAI:
            base_url = s.openai_base_url or OPENAI_BASE_URL
            # Forced tool calls only where OpenAI itself answers; a gateway behind
            # OPENAI_BASE_URL gets response_format, which OpenAI honours as well.
            is_openai = urlsplit(base_url).hostname == urlsplit(OPENAI_BASE_URL).hostname
            return OpenAIProvider(
                name=name.value,
                api_key=_secret(s.openai_api_key) or "",
                base_url=base_url,
                structured_output=(
                    StructuredOutput.TOOL_CALL if is_openai else StructuredOutput.JSON_SCHEMA
                ),
                openai_account=True,
                reasoning_effort=s.llm_reasoning_effort,
                **common,
            )
        # OPENAI_COMPATIBLE: _problem() made sure its base URL is set.
        return OpenAIProvider(
            name=name.value,
            api_key=_secret(s.openai_compatible_api_key) or _NO_KEY,
            base_url=s.openai_compatible_base_url or "",
            structured_output=StructuredOutput.JSON_SCHEMA,
            reasoning_effort=s.llm_reasoning_effort,
            **common,
        )


def _with_skipped(result: ProviderResult, skipped: Sequence[ProviderResult]) -> ProviderResult:
    """`result` with the attempts before it recorded and their spend in its totals."""
    if not skipped:
        return result
    entries = [
        {
            "provider": r.provider,
            "model": r.model,
            "reason": r.error.reason if r.error is not None else None,
            "message": r.error.message if r.error is not None else None,
            "attempts": r.attempts,
            "cost": format(r.cost, "f") if r.cost is not None else None,
        }
        for r in skipped
    ]
    everything = [*skipped, result]
    cost: Decimal | None = Decimal(0)
    for r in everything:
        # Refused before any request (not configured, circuit open): nothing spent.
        spent = Decimal(0) if r.attempts == 0 and r.cost is None else r.cost
        cost = None if spent is None or cost is None else cost + spent
    return dataclasses.replace(
        result,
        fallback_from=entries,
        cost=cost,
        prompt_tokens=_total(r.prompt_tokens for r in everything),
        completion_tokens=_total(r.completion_tokens for r in everything),
        cached_prompt_tokens=_total(r.cached_prompt_tokens for r in everything),
        attempts=sum(r.attempts for r in everything),
        latency_ms=sum(r.latency_ms for r in everything),
    )


def _total(values: Any) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
