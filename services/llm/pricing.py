"""What a model call costs: USD per million input and output tokens, as Decimal.

The built-in table holds list prices of common models as published by the vendors
(checked 2026-Q4); prices change, so the table is overridable: pass a mapping of model
to `ModelPrice` or to `{"input": "...", "output": "..."}` (per million tokens). A model
that is in neither has an unknown cost (None), which is recorded as unknown, never as
zero. Local servers (Ollama, vLLM) are unknown too unless priced, e.g. at zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_million: Decimal
    output_per_million: Decimal

    def __post_init__(self) -> None:
        if self.input_per_million < 0 or self.output_per_million < 0:
            raise ValueError("a price cannot be negative")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (
            Decimal(prompt_tokens) * self.input_per_million
            + Decimal(completion_tokens) * self.output_per_million
        ) / _MILLION


def _p(input_price: str, output_price: str) -> ModelPrice:
    return ModelPrice(Decimal(input_price), Decimal(output_price))


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4o": _p("2.50", "10.00"),
    "gpt-4o-mini": _p("0.15", "0.60"),
    "gpt-4.1": _p("2.00", "8.00"),
    "gpt-4.1-mini": _p("0.40", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.40"),
    "gpt-5": _p("1.25", "10.00"),
    "gpt-5-mini": _p("0.25", "2.00"),
    "gpt-5-nano": _p("0.05", "0.40"),
    "gpt-5.2": _p("1.75", "14.00"),
    "gpt-5.4": _p("2.50", "15.00"),
    "gpt-5.4-mini": _p("0.75", "4.50"),
    "claude-haiku-4-5": _p("1.00", "5.00"),
    "claude-sonnet-4-5": _p("3.00", "15.00"),
    "claude-opus-4-5": _p("5.00", "25.00"),
    "claude-sonnet-5": _p("2.00", "10.00"),
    "claude-sonnet-5-5": _p("2.00", "10.00"),
    "claude-opus-5": _p("5.00", "25.00"),
    "claude-opus-5-5": _p("4.00", "20.00"),
}


def _as_price(value: Any) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if isinstance(value, Mapping):
        try:
            return ModelPrice(Decimal(str(value["input"])), Decimal(str(value["output"])))
        except KeyError as e:
            raise ValueError(f"a price needs 'input' and 'output', missing {e}") from None
    if isinstance(value, tuple | list) and len(value) == 2:
        return ModelPrice(Decimal(str(value[0])), Decimal(str(value[1])))
    raise ValueError(f"not a price: {value!r}")


class PriceTable:
    """Looks a model up by exact id, then without a vendor prefix (`openai/gpt-4o`), then
    by the longest known id it starts with (`gpt-4o-2024-08-06` prices as `gpt-4o`)."""

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
            # Dated snapshots and suffixed variants: a known id followed by '-' or ':'.
            prefixes = [
                known
                for known in self._prices
                if candidate.startswith(known) and candidate[len(known)] in "-:"
            ]
            if prefixes:
                return self._prices[max(prefixes, key=len)]
        return None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
        price = self.price(model)
        return price.cost(prompt_tokens, completion_tokens) if price else None
