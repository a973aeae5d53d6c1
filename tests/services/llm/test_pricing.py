from __future__ import annotations

from decimal import Decimal

import pytest

from services.llm.pricing import ModelPrice, PriceTable


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
        assert table.price("gpt-5.1") is None

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
