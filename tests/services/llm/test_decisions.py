"""The decision schema: cross-field rules and the JSON Schema sent to providers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from models.decisions import AgentContext, Decision, RiskTolerance, decision_json_schema
from models.enums import DecisionType, OrderType
from tests.services.llm.support import decision_payload, make_context


def trade(**overrides: Any) -> dict[str, Any]:
    payload = {
        "decision_type": "trade",
        "symbol": "BTC-USD",
        "side": "buy",
        "fraction_of_equity": "0.05",
        "reasoning": "because",
        "confidence_score": "0.7",
    }
    payload.update(overrides)
    return payload


def rejects(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Decision.model_validate(payload)


class TestTrade:
    def test_market_trade_by_fraction(self) -> None:
        decision = Decision.model_validate(trade())

        assert decision.fraction_of_equity == Decimal("0.05")
        assert decision.order_type is OrderType.MARKET

    def test_trade_by_quantity(self) -> None:
        decision = Decision.model_validate(trade(fraction_of_equity=None, quantity="0.125"))

        assert decision.quantity == Decimal("0.125")

    def test_json_number_becomes_the_exact_decimal(self) -> None:
        decision = Decision.model_validate_json(json.dumps(trade(fraction_of_equity=0.1)))

        assert decision.fraction_of_equity == Decimal("0.1")

    def test_symbol_is_upper_cased(self) -> None:
        assert Decision.model_validate(trade(symbol="btc-usd")).symbol == "BTC-USD"

    def test_needs_a_side(self) -> None:
        rejects(trade(side=None), "a trade needs a side")

    def test_needs_a_symbol(self) -> None:
        rejects(trade(symbol=None), "a trade needs a symbol")

    def test_needs_exactly_one_size(self) -> None:
        rejects(trade(quantity="1"), "exactly one of quantity or fraction_of_equity")
        rejects(trade(fraction_of_equity=None), "exactly one of quantity or fraction_of_equity")

    def test_size_must_be_positive_and_fraction_at_most_one(self) -> None:
        rejects(trade(fraction_of_equity=None, quantity="0"), "quantity")
        rejects(trade(fraction_of_equity="1.5"), "fraction_of_equity")

    def test_limit_needs_limit_price(self) -> None:
        rejects(trade(order_type="limit"), "a limit order needs limit_price")
        decision = Decision.model_validate(trade(order_type="limit", limit_price="99.5"))
        assert decision.limit_price == Decimal("99.5")

    def test_market_takes_no_prices(self) -> None:
        rejects(trade(limit_price="99"), "a market order takes no limit_price")
        rejects(trade(stop_price="99"), "a market order takes no stop_price")

    def test_stop_needs_stop_price_only(self) -> None:
        rejects(trade(order_type="stop"), "a stop order needs stop_price")
        rejects(
            trade(order_type="stop", stop_price="90", limit_price="89"),
            "a stop order takes no limit_price",
        )

    def test_stop_limit_needs_both_prices(self) -> None:
        rejects(trade(order_type="stop_limit", stop_price="90"), "needs limit_price")
        rejects(trade(order_type="stop_limit", limit_price="89"), "needs stop_price")
        decision = Decision.model_validate(
            trade(order_type="stop_limit", stop_price="90", limit_price="89")
        )
        assert decision.order_type is OrderType.STOP_LIMIT

    def test_confidence_within_zero_and_one(self) -> None:
        rejects(trade(confidence_score="1.01"), "confidence_score")

    def test_reasoning_is_required(self) -> None:
        rejects(trade(reasoning="   "), "reasoning")

    def test_unknown_fields_are_refused(self) -> None:
        rejects(trade(leverage=10), "leverage")


class TestOtherTypes:
    @pytest.mark.parametrize("kind", ["hold", "analysis", "risk_check"])
    def test_needs_no_order_fields(self, kind: str) -> None:
        decision = Decision.model_validate(
            {"decision_type": kind, "reasoning": "wait", "confidence_score": 0.5}
        )

        assert decision.decision_type == kind
        assert decision.side is None

    def test_hold_with_an_order_field_is_refused(self) -> None:
        rejects(
            {"decision_type": "hold", "side": "buy", "reasoning": "x", "confidence_score": 0.5},
            "a hold decision carries no order fields; remove side",
        )

    def test_rebalance_needs_target_weights(self) -> None:
        base = {"decision_type": "rebalance", "reasoning": "x", "confidence_score": 0.6}
        rejects(base, "a rebalance needs target_weights")
        decision = Decision.model_validate(
            {**base, "target_weights": [{"symbol": "BTC-USD", "weight": 0.6}]}
        )
        assert decision.target_weights is not None
        assert decision.target_weights[0].weight == Decimal("0.6")

    def test_rebalance_weights_sum_to_at_most_one(self) -> None:
        weights = [{"symbol": "BTC-USD", "weight": 0.6}, {"symbol": "ETH-USD", "weight": 0.5}]
        rejects(
            {
                "decision_type": "rebalance",
                "reasoning": "x",
                "confidence_score": 0.6,
                "target_weights": weights,
            },
            "sum to 1.1",
        )

    def test_rebalance_names_each_symbol_once(self) -> None:
        weights = [{"symbol": "BTC-USD", "weight": 0.2}, {"symbol": "btc-usd", "weight": 0.2}]
        rejects(
            {
                "decision_type": "rebalance",
                "reasoning": "x",
                "confidence_score": 0.6,
                "target_weights": weights,
            },
            "name a symbol twice",
        )

    def test_rebalance_takes_no_order_fields(self) -> None:
        rejects(
            {
                "decision_type": "rebalance",
                "side": "buy",
                "reasoning": "x",
                "confidence_score": 0.6,
                "target_weights": [{"symbol": "BTC-USD", "weight": 0.5}],
            },
            "remove side",
        )


class TestJsonSchema:
    def test_covers_exactly_the_model_fields(self) -> None:
        schema = decision_json_schema()

        assert set(schema["properties"]) == set(Decision.model_fields)

    def test_is_strict_mode_shaped(self) -> None:
        schema = decision_json_schema()
        item = schema["properties"]["target_weights"]["items"]

        assert schema["required"] == list(schema["properties"])
        assert schema["additionalProperties"] is False
        assert item["required"] == list(item["properties"])
        assert item["additionalProperties"] is False

    def test_enums_match_the_model(self) -> None:
        props = decision_json_schema()["properties"]

        assert props["decision_type"]["enum"] == [t.value for t in DecisionType]
        assert props["order_type"]["enum"] == [*(t.value for t in OrderType), None]

    def test_a_strict_mode_answer_validates(self) -> None:
        # Strict mode sends every property, the inapplicable ones as null.
        decision = Decision.model_validate_json(json.dumps(decision_payload()))

        assert decision.decision_type is DecisionType.TRADE


class TestAgentContext:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0.9, 0.9),
            ("high", 0.8),
            ("0.25", 0.25),
            (7, 1.0),
            (True, 0.5),
            ("wild", 0.5),
            (None, 0.5),
        ],
    )
    def test_aggression_reads_numbers_and_words(self, value: object, expected: float) -> None:
        assert make_context(aggression=value).aggression == expected  # type: ignore[arg-type]

    def test_risk_level_buckets_the_tolerance(self) -> None:
        assert make_context(risk_tolerance="0.2").risk_level is RiskTolerance.LOW
        assert make_context(risk_tolerance="0.5").risk_level is RiskTolerance.MEDIUM
        assert make_context(risk_tolerance="0.9").risk_level is RiskTolerance.HIGH

    def test_round_trips_through_json_with_decimal_strings(self) -> None:
        context = make_context([100, "100.5", 101])
        data = json.loads(context.model_dump_json())

        assert data["symbols"][0]["candles"][1]["close"] == "100.5"
        assert data["portfolio"]["cash"] == "10000"
        assert AgentContext.model_validate(data) == context
