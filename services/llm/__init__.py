"""The LLM layer: providers that turn an agent's context into a `Decision`.

`services.llm_service.LLMService` is the entry point; this package holds the providers
(`local`, OpenAI-family, Anthropic), their shared result and error tree, prompts,
pricing and the per-agent circuit breaker.
"""

from services.llm.base import (
    InvalidDecisionError,
    LLMProvider,
    ProviderConfigError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderResult,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RetryPolicy,
)
from services.llm.breaker import BreakerState, CircuitBreaker
from services.llm.pricing import ModelPrice, PriceTable

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "InvalidDecisionError",
    "LLMProvider",
    "ModelPrice",
    "PriceTable",
    "ProviderConfigError",
    "ProviderError",
    "ProviderRateLimitedError",
    "ProviderResult",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RetryPolicy",
]
