"""The provider interface, its result, its error tree, and the retry/repair loop the
chat providers share.

`LLMProvider.decide` never raises a `ProviderError`: it returns a `ProviderResult`
holding either the decision or the error, plus what was sent, what came back and what
it cost, so a failed call can be stored as faithfully as a good one.

A chat provider makes at most two answers per decision: the first, and one repair
(the validation problems are sent back and corrected JSON asked for). Each answer is
one HTTP request retried on timeouts, 429 and 5xx/connection errors with exponential
backoff, honouring Retry-After; the SDKs' own retries are off so every attempt is
counted here and the delays can be injected.

Two answers end differently:
- cut off by the output token cap (OpenAI `finish_reason` "length", Anthropic
  `stop_reason` "max_tokens"): asked once more with the cap doubled, up to the
  provider's ceiling; cut again (or no room to grow), the decision fails with
  `TruncatedAnswerError` (reason `truncated`). One such retry per decision.
- a refusal (OpenAI `message.refusal` or `finish_reason` "content_filter", Anthropic
  `stop_reason` "refusal"): the decision ends at once with `ModelRefusalError`
  (reason `refused` or `content_filter`), the model's words kept in `raw_answers`;
  never repaired, never retried.
Neither counts against the provider's circuit breaker, and neither moves a decision
to a fallback provider: the provider answered.
"""

from __future__ import annotations

import abc
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import structlog
from pydantic import ValidationError

from core.exceptions import UpstreamError
from models.agents import unstorable
from models.decisions import AgentContext, Decision
from models.enums import DecisionType
from services.llm.pricing import PriceTable, TokenUsage

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class ProviderError(UpstreamError):
    """A provider could not produce a decision. `reason` is a short stable code."""

    code = "llm_provider_error"
    status_code = 502
    reason = "provider_error"
    retryable = False
    # A malformed answer proves the provider is up; only failures to answer open a breaker.
    counts_against_breaker = True
    # The provider could not answer at all (down, slow, rate limited, not configured):
    # a decision with fallbacks moves on to the next provider.
    falls_back = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        reason: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if reason is not None:
            self.reason = reason
        if retryable is not None:
            self.retryable = retryable
        self.provider = provider
        self.retry_after = retry_after
        merged = {"provider": provider, "reason": self.reason, **(details or {})}
        super().__init__(message, details=merged)


class ProviderTimeoutError(ProviderError):
    code = "llm_provider_timeout"
    status_code = 504
    reason = "timeout"
    retryable = True
    falls_back = True


class ProviderRateLimitedError(ProviderError):
    code = "llm_provider_rate_limited"
    status_code = 503
    reason = "rate_limited"
    retryable = True
    falls_back = True


class ProviderUnavailableError(ProviderError):
    """5xx, a refused or dropped connection, or an open circuit breaker."""

    code = "llm_provider_unavailable"
    status_code = 503
    reason = "unavailable"
    retryable = True
    falls_back = True


class InvalidDecisionError(ProviderError):
    """The model answered twice and neither answer was a valid decision."""

    code = "llm_invalid_decision"
    status_code = 502
    reason = "invalid_decision"
    counts_against_breaker = False

    def __init__(
        self,
        message: str,
        *,
        raw_answers: Sequence[str],
        problems: Sequence[str],
        provider: str | None = None,
    ) -> None:
        self.raw_answers = tuple(raw_answers)
        self.problems = tuple(problems)
        super().__init__(
            message,
            provider=provider,
            details={"raw_answers": list(self.raw_answers), "problems": list(self.problems)},
        )


class ProviderConfigError(ProviderError):
    """Unknown provider, missing key or base URL, a key the provider rejects, an unknown model."""

    code = "llm_provider_config"
    status_code = 422
    reason = "config"
    falls_back = True


class ModelRefusalError(ProviderError):
    """The model declined to answer (reason `refused`) or the provider's content filter
    stopped the answer (reason `content_filter`); `refusal` is what the model said."""

    code = "llm_model_refused"
    status_code = 422
    reason = "refused"
    counts_against_breaker = False

    def __init__(
        self, message: str, *, refusal: str, provider: str | None = None, reason: str | None = None
    ) -> None:
        self.refusal = refusal
        super().__init__(message, provider=provider, reason=reason, details={"refusal": refusal})


class TruncatedAnswerError(ProviderError):
    """The answer was cut off by the output token cap, again after the one retry with a
    larger cap (or the cap could not grow)."""

    code = "llm_answer_truncated"
    status_code = 502
    reason = "truncated"
    counts_against_breaker = False


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """One decision attempt, successful or not, with everything needed to audit it.

    `request` is the last request sent (it holds the whole conversation, repair turn
    included) as JSON-ready data; `raw_answers` every answer text received, in order.
    Tokens are summed over the answers received (None when no answer reported usage);
    `cached_prompt_tokens` is the part of `prompt_tokens` read from the provider's
    prompt cache. `cost` is None when unknown (a model missing from the price table),
    never a guess; 0 when no answer came back (failed requests are not billed).
    `attempts` counts HTTP requests, retries and the repair included; `repaired` says a
    repair request was sent; `enlarged` that an answer cut off by the token cap was
    asked again with a larger cap.
    `provider`/`model` name who answered; `fallback_from` lists the providers tried
    before it that could not answer, in order: {provider, model, reason, message,
    attempts, cost}. Their cost and tokens are included in this result's totals.
    """

    provider: str
    model: str
    decision: Decision | None = None
    error: ProviderError | None = None
    request: dict[str, Any] = field(default_factory=dict)
    raw_answers: tuple[str, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Decimal | None = None
    latency_ms: int = 0
    attempts: int = 0
    repaired: bool = False
    cached_prompt_tokens: int | None = None
    enlarged: bool = False
    fallback_from: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.decision is None) == (self.error is None):
            raise ValueError("a ProviderResult holds exactly one of decision or error")

    @property
    def ok(self) -> bool:
        return self.decision is not None

    @property
    def raw_answer(self) -> str | None:
        return self.raw_answers[-1] if self.raw_answers else None

    def unwrap(self) -> Decision:
        """The decision, or the error raised."""
        if self.error is not None:
            raise self.error
        if self.decision is None:
            # __post_init__ rules this out; the check is for mypy's benefit.
            raise ValueError("a ProviderResult without a decision or an error")
        return self.decision

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form for storage (Decimals as strings)."""
        error = None
        if self.error is not None:
            error = {
                "type": type(self.error).__name__,
                "code": self.error.code,
                "reason": self.error.reason,
                "message": self.error.message,
            }
        return {
            "provider": self.provider,
            "model": self.model,
            "decision": self.decision.model_dump(mode="json") if self.decision else None,
            "error": error,
            "request": self.request,
            "raw_answers": list(self.raw_answers),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": format(self.cost, "f") if self.cost is not None else None,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
            "repaired": self.repaired,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "enlarged": self.enlarged,
            "fallback_from": [dict(entry) for entry in self.fallback_from],
        }


class LLMProvider(abc.ABC):
    """Something that turns an agent's context into a decision."""

    # The provider name as agents configure it: local, openai, openrouter, ...
    name: str

    @abc.abstractmethod
    async def decide(self, context: AgentContext, *, model: str) -> ProviderResult:
        """Decide for `context` with `model`; failures come back in `result.error`."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections; the default has none."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per answer and the backoff between them: base * 2**(n-1), capped; a
    Retry-After header wins when present (capped at `max_retry_after`)."""

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.base_delay * 2.0 ** (attempt - 1), self.max_delay)


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(value, 0.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
    return max(value, 0.0) if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer from a model. `payload` is set when the SDK already parsed the JSON
    (Anthropic's tool input); `problem` when the answer has no decision at all (no tool
    call). `cost` is what the provider reported it charged, if it did. `truncated`: cut
    off by the token cap; `refusal`: the model declined (its words in `raw_text`), with
    `refusal` the reason code (`refused`, `content_filter`). `cached_tokens` and the
    cache writes are parts of `prompt_tokens` (see `pricing.TokenUsage`)."""

    raw_text: str
    payload: Any = None
    problem: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Decimal | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    truncated: bool = False
    refusal: str | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    def usage(self) -> TokenUsage | None:
        if self.prompt_tokens is None:
            return None
        return TokenUsage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens or 0,
            cached_tokens=self.cached_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
        )


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_decision(answer: Answer, context: AgentContext) -> tuple[Decision | None, list[str]]:
    """The answer as a Decision checked against the context, or the problems to send back."""
    if answer.problem is not None:
        return None, [answer.problem]
    payload = answer.payload
    if payload is None:
        text = answer.raw_text.strip()
        # Local models like to wrap JSON in a Markdown fence even when told not to.
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as e:
            return None, [
                f"the answer is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
            ]
    try:
        decision = Decision.model_validate(payload)
    except ValidationError as e:
        return None, [_describe(err) for err in e.errors(include_url=False)]
    # What the decision log could not keep (NUL, amounts beyond its scale) goes back too.
    problems = context_problems(decision, context) + unstorable(decision)
    return (None, problems) if problems else (decision, [])


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(p) for p in error.get("loc", ())) or "decision"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{location}: {message}"


def context_problems(decision: Decision, context: AgentContext) -> list[str]:
    """What a decision names that the agent cannot act on (a symbol it does not watch)."""
    allowed = {s.symbol.upper() for s in context.symbols}
    problems: list[str] = []
    if decision.decision_type is DecisionType.TRADE and decision.symbol not in allowed:
        watched = ", ".join(sorted(allowed))
        problems.append(f"symbol: {decision.symbol} is not one of the agent's symbols ({watched})")
    for weight in decision.target_weights or ():
        if weight.symbol.upper() not in allowed:
            problems.append(f"target_weights: {weight.symbol} is not one of the agent's symbols")
    return problems


@dataclass(slots=True)
class _Tally:
    attempts: int = 0
    raw_answers: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost: Decimal | None = Decimal(0)
    enlarged: bool = False

    def add(self, answer: Answer, cost: Decimal | None) -> None:
        self.raw_answers.append(answer.raw_text)
        if answer.prompt_tokens is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + answer.prompt_tokens
            self.cached_tokens = (self.cached_tokens or 0) + answer.cached_tokens
        if answer.completion_tokens is not None:
            self.completion_tokens = (self.completion_tokens or 0) + answer.completion_tokens
        # One answer of unknown cost makes the total unknown.
        self.cost = None if cost is None or self.cost is None else self.cost + cost


class ChatProvider(LLMProvider):
    """Shared decide loop of the chat-model providers; subclasses speak their SDK."""

    def __init__(
        self,
        *,
        name: str,
        prices: PriceTable,
        retry: RetryPolicy,
        sleep: Sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self._prices = prices
        self._retry = retry
        self._sleep = sleep
        self._clock = clock

    @abc.abstractmethod
    def _initial_request(self, context: AgentContext, model: str) -> dict[str, Any]:
        """The SDK call's keyword arguments, JSON-ready."""

    @abc.abstractmethod
    async def _send(self, request: dict[str, Any]) -> Answer:
        """Make one HTTP request; SDK errors propagate for `_translate`."""

    @abc.abstractmethod
    def _repair_request(
        self, request: dict[str, Any], answer: Answer, problems: Sequence[str]
    ) -> dict[str, Any]:
        """The request continued with the bad answer and a request to correct it."""

    @abc.abstractmethod
    def _enlarged_request(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The same request with a larger output token cap; None when it cannot grow."""

    @abc.abstractmethod
    def _translate(self, error: Exception) -> ProviderError | None:
        """The SDK error as a ProviderError; None for anything that is not an SDK error."""

    async def decide(self, context: AgentContext, *, model: str) -> ProviderResult:
        started = self._clock()
        tally = _Tally()
        sent = [self._initial_request(context, model)]
        repaired = False
        decision: Decision | None = None
        error: ProviderError | None = None
        try:
            answer = await self._complete(sent, model, tally)
            decision, problems = parse_decision(answer, context)
            if decision is None:
                log.info("llm_answer_invalid", provider=self.name, model=model, problems=problems)
                sent.append(self._repair_request(sent[-1], answer, problems))
                repaired = True
                answer = await self._complete(sent, model, tally)
                decision, problems = parse_decision(answer, context)
                if decision is None:
                    raise InvalidDecisionError(
                        f"{self.name} returned no valid decision after one repair: "
                        + "; ".join(problems),
                        raw_answers=tally.raw_answers,
                        problems=problems,
                        provider=self.name,
                    )
        except ProviderError as e:
            error = e
            log.warning(
                "llm_decision_failed",
                provider=self.name,
                model=model,
                reason=e.reason,
                error=e.message,
            )
        return ProviderResult(
            provider=self.name,
            model=model,
            decision=decision,
            error=error,
            request=sent[-1],
            raw_answers=tuple(tally.raw_answers),
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            cost=tally.cost,
            latency_ms=max(0, round((self._clock() - started) * 1000)),
            attempts=tally.attempts,
            repaired=repaired,
            cached_prompt_tokens=tally.cached_tokens,
            enlarged=tally.enlarged,
        )

    async def _complete(self, sent: list[dict[str, Any]], model: str, tally: _Tally) -> Answer:
        """One answer to the last request in `sent`: a refusal ends the decision; an
        answer cut off by the token cap is asked again once (per decision) with a larger
        cap, whose request is appended to `sent`."""
        answer = await self._answer(sent[-1], model, tally)
        if answer.truncated and not tally.enlarged:
            larger = self._enlarged_request(sent[-1])
            if larger is not None:
                tally.enlarged = True
                log.info("llm_answer_truncated_retry", provider=self.name, model=model)
                sent.append(larger)
                answer = await self._answer(larger, model, tally)
        if answer.refusal is not None:
            raise ModelRefusalError(
                f"{self.name} refused to decide ({answer.refusal}): "
                + (answer.raw_text or "no explanation given"),
                refusal=answer.raw_text,
                provider=self.name,
                reason=answer.refusal,
            )
        if answer.truncated:
            raise TruncatedAnswerError(
                f"{self.name} cut the answer off at the output token cap "
                f"({output_cap(sent[-1])} tokens)"
                + (", again after a retry with a larger cap" if tally.enlarged else ""),
                provider=self.name,
                details={"max_output_tokens": output_cap(sent[-1])},
            )
        return answer

    async def _answer(self, request: dict[str, Any], model: str, tally: _Tally) -> Answer:
        attempt = 0
        while True:
            attempt += 1
            tally.attempts += 1
            try:
                answer = await self._send(request)
            except Exception as e:
                error = self._translate(e)
                if error is None:
                    raise
                if not error.retryable or attempt >= self._retry.max_attempts:
                    raise error from e
                delay = self._retry.delay(attempt, error.retry_after)
                log.info(
                    "llm_retry",
                    provider=self.name,
                    model=model,
                    attempt=attempt,
                    reason=error.reason,
                    delay_seconds=delay,
                )
                await self._sleep(delay)
                continue
            cost = answer.cost
            usage = answer.usage()
            if cost is None and usage is not None:
                cost = self._prices.cost_of(model, usage)
            tally.add(answer, cost)
            return answer


# The request keys that cap an answer's output tokens, by API.
OUTPUT_CAP_KEYS = ("max_completion_tokens", "max_tokens")


def output_cap(request: Mapping[str, Any]) -> int | None:
    for key in OUTPUT_CAP_KEYS:
        if isinstance(request.get(key), int):
            return int(request[key])
    return None


def enlarge_output_cap(request: dict[str, Any], ceiling: int) -> dict[str, Any] | None:
    """`request` with its output cap doubled, at most `ceiling`; None if it cannot grow."""
    for key in OUTPUT_CAP_KEYS:
        current = request.get(key)
        if isinstance(current, int):
            larger = min(current * 2, ceiling)
            return {**request, key: larger} if larger > current else None
    return None
