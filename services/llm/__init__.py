"""The LLM layer: providers that turn an agent's context into a `Decision`.

`services.llm.service.LLMService` is the entry point; `providers/` holds the providers
(`local`, OpenAI-family, Anthropic), beside their shared result and error tree, prompts,
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
