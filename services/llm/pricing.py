"""What a model call costs: USD per million tokens, as Decimal.

The built-in table holds the vendors' standard-tier list prices, checked 2026-12-01
against OpenAI's pricing page (developers.openai.com/api/docs/pricing) and Anthropic's
(platform.claude.com/docs/en/about-claude/pricing and each model's overview page).
Prices change, so the table is overridable: pass a mapping of model to `ModelPrice` or
to `{"input": "...", "output": "...", "cached_input": "..."}` (per million tokens;
`cached_input` optional). A model that is in neither has an unknown cost (None),
which is recorded as unknown, never as zero. Local servers (Ollama, vLLM) are unknown
too unless priced, e.g. at zero.

Prompt caching, priced per answer from the usage the provider reports:
- cache reads (OpenAI `prompt_tokens_details.cached_tokens`, Anthropic
  `cache_read_input_tokens`) at the model's cached-input rate. That rate is per model
  (OpenAI: a half, a quarter or a tenth of the input price by family; Anthropic: a
  tenth, a twentieth on Sonnet 5.5 and Opus 5.5); a price without one, such as an
  override that leaves it out, bills cache reads at the full input rate, an upper bound.
- cache writes (Anthropic `cache_creation_input_tokens`) at 1.25x the input price for
  the 5-minute cache and 2x for the 1-hour one (`cache_creation.ephemeral_1h_input_tokens`),
  the same multipliers on every Claude model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_MILLION = Decimal(1_000_000)
CACHE_WRITE_5M_MULTIPLIER = Decimal("1.25")
CACHE_WRITE_1H_MULTIPLIER = Decimal(2)
# What may follow a known id in a dated snapshot of the same model: -2024-08-06,
# -20250514, -0613, or a tag (:8b). `o3-pro` or `gpt-5-pro` are other models.
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|:.*)")


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """The tokens of one answer. `prompt_tokens` is all the input, cache reads and
    writes included; `cached_tokens`, `cache_write_tokens` (5-minute) and
    `cache_write_1h_tokens` say how much of it was which."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def fresh_tokens(self) -> int:
        cached = self.cached_tokens + self.cache_write_tokens + self.cache_write_1h_tokens
        return max(self.prompt_tokens - cached, 0)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None

    def __post_init__(self) -> None:
        rates = (self.input_per_million, self.output_per_million, self.cached_input_per_million)
        if any(rate is not None and rate < 0 for rate in rates):
            raise ValueError("a price cannot be negative")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.cost_of(TokenUsage(prompt_tokens, completion_tokens))

    def cost_of(self, usage: TokenUsage) -> Decimal:
        read_rate = (
            self.cached_input_per_million
            if self.cached_input_per_million is not None
            else self.input_per_million
        )
        total = (
            Decimal(usage.fresh_tokens) * self.input_per_million
            + Decimal(usage.cached_tokens) * read_rate
            + Decimal(usage.cache_write_tokens) * self.input_per_million * CACHE_WRITE_5M_MULTIPLIER
            + Decimal(usage.cache_write_1h_tokens)
            * self.input_per_million
            * CACHE_WRITE_1H_MULTIPLIER
            + Decimal(usage.completion_tokens) * self.output_per_million
        )
        return total / _MILLION


def _p(input_price: str, output_price: str, cached_input: str | None = None) -> ModelPrice:
    cached = Decimal(cached_input) if cached_input is not None else None
    return ModelPrice(Decimal(input_price), Decimal(output_price), cached)


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4o": _p("2.50", "10.00", "1.25"),
    "gpt-4o-mini": _p("0.15", "0.60", "0.075"),
    "gpt-4.1": _p("2.00", "8.00", "0.50"),
    "gpt-4.1-mini": _p("0.40", "1.60", "0.10"),
    "gpt-4.1-nano": _p("0.10", "0.40", "0.025"),
    "o1": _p("15.00", "60.00", "7.50"),
    "o3": _p("2.00", "8.00", "0.50"),
    "o3-mini": _p("1.10", "4.40", "0.55"),
    "o4-mini": _p("1.10", "4.40", "0.275"),
    "gpt-5": _p("1.25", "10.00", "0.125"),
    "gpt-5-mini": _p("0.25", "2.00", "0.025"),
    "gpt-5-nano": _p("0.05", "0.40", "0.005"),
    "gpt-5.1": _p("1.25", "10.00", "0.125"),
    "gpt-5.2": _p("1.75", "14.00", "0.175"),
    "gpt-5.4": _p("2.50", "15.00", "0.25"),
    "gpt-5.4-mini": _p("0.75", "4.50", "0.075"),
    "gpt-5.5": _p("5.00", "30.00", "0.50"),
    "claude-haiku-4-5": _p("1.00", "5.00", "0.10"),
    "claude-sonnet-4": _p("3.00", "15.00", "0.30"),
    "claude-sonnet-4-0": _p("3.00", "15.00", "0.30"),
    "claude-sonnet-4-5": _p("3.00", "15.00", "0.30"),
    "claude-sonnet-4-6": _p("3.00", "15.00", "0.30"),
    "claude-opus-4": _p("15.00", "75.00", "1.50"),
    "claude-opus-4-0": _p("15.00", "75.00", "1.50"),
    "claude-opus-4-1": _p("15.00", "75.00", "1.50"),
    "claude-opus-4-5": _p("5.00", "25.00", "0.50"),
    "claude-opus-4-6": _p("5.00", "25.00", "0.50"),
    "claude-opus-4-7": _p("5.00", "25.00", "0.50"),
    "claude-opus-4-8": _p("5.00", "25.00", "0.50"),
    "claude-sonnet-5": _p("2.00", "10.00", "0.20"),
    # Cache reads cut from 0.20 to 0.10 on 2026-10-07.
    "claude-sonnet-5-5": _p("2.00", "10.00", "0.10"),
    "claude-opus-5": _p("5.00", "25.00", "0.50"),
    "claude-opus-5-5": _p("4.00", "20.00", "0.20"),
}


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _as_price(value: Any) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if isinstance(value, Mapping):
        try:
            cached = value.get("cached_input")
            return ModelPrice(
                _decimal(value["input"]),
                _decimal(value["output"]),
                _decimal(cached) if cached is not None else None,
            )
        except KeyError as e:
            raise ValueError(f"a price needs 'input' and 'output', missing {e}") from None
    if isinstance(value, tuple | list) and len(value) in (2, 3):
        cached = _decimal(value[2]) if len(value) == 3 else None
        return ModelPrice(_decimal(value[0]), _decimal(value[1]), cached)
    raise ValueError(f"not a price: {value!r}")


class PriceTable:
    """Looks a model up by exact id, then without a vendor prefix (`openai/gpt-4o`), then
    as a dated snapshot of the longest known id (`gpt-4o-2024-08-06` prices as `gpt-4o`,
    `claude-sonnet-4-20250514` as `claude-sonnet-4`); `o3-pro` is not `o3`."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        prices = dict(DEFAULT_PRICES)
        for model, value in (overrides or {}).items():
            prices[model.lower()] = _as_price(value)
        self._prices = prices

    def price(self, model: str) -> ModelPrice | None:
        name = model.strip().lower()
        candidates = [name]
        if "/" in name:
            candidates.append(name.rsplit("/", 1)[1])
        for candidate in candidates:
            if candidate in self._prices:
                return self._prices[candidate]
        for candidate in candidates:
            prefixes = [
                known
                for known in self._prices
                if candidate.startswith(known) and _SNAPSHOT.fullmatch(candidate[len(known) :])
            ]
            if prefixes:
                return self._prices[max(prefixes, key=len)]
        return None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
        return self.cost_of(model, TokenUsage(prompt_tokens, completion_tokens))

    def cost_of(self, model: str, usage: TokenUsage) -> Decimal | None:
        price = self.price(model)
        return price.cost_of(usage) if price else None
