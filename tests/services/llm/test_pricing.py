from __future__ import annotations

from decimal import Decimal

import pytest

from services.llm.pricing import ModelPrice, PriceTable, TokenUsage


class TestPriceTable:
    def test_cost_is_exact_decimal_per_million_tokens(self) -> None:
        table = PriceTable()

        # gpt-4o: 2.50 in, 10.00 out.
        assert table.cost("gpt-4o", 1234, 567) == Decimal("0.008755")

    def test_dated_snapshot_uses_the_longest_known_prefix(self) -> None:
        table = PriceTable()

        assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
        assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")

    def test_vendor_prefix_is_ignored(self) -> None:
        assert PriceTable().price("openai/gpt-4o-mini") == PriceTable().price("gpt-4o-mini")

    def test_unknown_model_is_unknown_not_free(self) -> None:
        table = PriceTable()

        assert table.price("llama3.1") is None
        assert table.cost("llama3.1", 100, 100) is None
        # A different version is not a dated snapshot of a known one.
        assert table.price("gpt-5.3") is None

    def test_overrides_accept_prices_mappings_and_pairs(self) -> None:
        table = PriceTable(
            {
                "llama3.1": {"input": "0", "output": "0"},
                "GPT-4o": ModelPrice(Decimal(1), Decimal(2)),
                "my-model": ("0.5", "1.5"),
            }
        )

        assert table.cost("llama3.1", 1000, 1000) == Decimal(0)
        assert table.cost("gpt-4o", 1_000_000, 1_000_000) == Decimal(3)
        assert table.cost("my-model", 2_000_000, 0) == Decimal(1)

    def test_bad_override_is_refused(self) -> None:
        with pytest.raises(ValueError, match="'input' and 'output'"):
            PriceTable({"x": {"in": 1}})
        with pytest.raises(ValueError, match="negative"):
            PriceTable({"x": ("-1", "1")})


class TestListPrices:
    @pytest.mark.parametrize(
        ("model", "rates"),
        [
            ("o3", ("2.00", "8.00", "0.50")),
            ("o4-mini", ("1.10", "4.40", "0.275")),
            ("gpt-5.1", ("1.25", "10.00", "0.125")),
            ("gpt-5.1-2025-11-13", ("1.25", "10.00", "0.125")),
            ("claude-sonnet-4-20250514", ("3.00", "15.00", "0.30")),
            ("claude-opus-4-1", ("15.00", "75.00", "1.50")),
            ("claude-opus-4-1-20250805", ("15.00", "75.00", "1.50")),
            ("claude-sonnet-5-5", ("2.00", "10.00", "0.10")),
        ],
    )
    def test_current_models_are_priced(self, model: str, rates: tuple[str, str, str]) -> None:
        price = PriceTable().price(model)

        assert price is not None
        assert (
            price.input_per_million,
            price.output_per_million,
            price.cached_input_per_million,
        ) == tuple(Decimal(r) for r in rates)

    @pytest.mark.parametrize(
        "model", ["o3-pro", "o3-deep-research", "gpt-5-pro", "o4-mini-deep-research"]
    )
    def test_a_sibling_model_is_not_priced_as_its_base(self, model: str) -> None:
        """`o3-pro` (ten times o3's price) used to be priced as `o3` by prefix."""
        assert PriceTable().price(model) is None

    def test_cached_and_cache_written_tokens_have_their_own_rates(self) -> None:
        usage = TokenUsage(
            prompt_tokens=4_000_000,
            completion_tokens=1_000_000,
            cached_tokens=1_000_000,
            cache_write_tokens=1_000_000,
            cache_write_1h_tokens=1_000_000,
        )
        price = ModelPrice(Decimal(2), Decimal(10), Decimal("0.2"))

        # fresh 2 + read 0.2 + 5m write 2.5 + 1h write 4 + output 10
        assert price.cost_of(usage) == Decimal("18.7")

    def test_override_takes_an_optional_cached_rate(self) -> None:
        table = PriceTable(
            {"a": {"input": "1", "output": "2", "cached_input": "0.5"}, "b": ("1", "2")}
        )
        usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=0, cached_tokens=1_000_000)

        assert table.cost_of("a", usage) == Decimal("0.5")
        assert table.cost_of("b", usage) == Decimal(1)
        assert table.cost_of("unknown", usage) is None
