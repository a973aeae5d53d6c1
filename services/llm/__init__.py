"""The LLM layer: providers that turn an agent's context into a `Decision`.

`services.llm.service.LLMService` is the entry point; `providers/` holds the providers
(`local`, OpenAI-family, Anthropic), beside their shared result and error tree, prompts,
pricing and the per-provider circuit breaker.
"""

from services.llm.base import (
    InvalidDecisionError,
    LLMProvider,
    ModelRefusalError,
    ProviderConfigError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderResult,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RetryPolicy,
    TruncatedAnswerError,
)
from services.llm.breaker import BreakerState, CircuitBreaker
from services.llm.pricing import ModelPrice, PriceTable, TokenUsage

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "InvalidDecisionError",
    "LLMProvider",
    "ModelPrice",
    "ModelRefusalError",
    "PriceTable",
    "ProviderConfigError",
    "ProviderError",
    "ProviderRateLimitedError",
    "ProviderResult",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RetryPolicy",
    "TokenUsage",
    "TruncatedAnswerError",
]
