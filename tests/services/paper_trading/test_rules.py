from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.base import PairRules
from core.exceptions import ValidationFailedError
from models.enums import OrderSide, OrderType, TimeInForce
from services.paper_trading.matching import Order
from services.paper_trading.rules import (
    RuleCode,
    RuleViolation,
    is_on_tick,
    normalize_order,
    round_down_to_step,
)

RULES = PairRules(
    symbol="BTC-USD",
    base_asset="BTC",
    quote_asset="USD",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.0001"),
    min_quantity=Decimal("0.001"),
    max_quantity=Decimal("100"),
    min_notional=Decimal("10"),
)


def d(value: str) -> Decimal:
    return Decimal(value)


def make_order(
    *,
    side: OrderSide = OrderSide.BUY,
    order_type: OrderType = OrderType.LIMIT,
    quantity: str = "1",
    limit: str | None = "100",
    stop: str | None = None,
    symbol: str = "BTC-USD",
) -> Order:
    return Order(
        id="o1",
        account_id="acct-1",
        symbol=symbol,
        side=side,
        order_type=order_type,
        time_in_force=TimeInForce.GTC,
        quantity=d(quantity),
        remaining=d(quantity),
        limit_price=d(limit) if limit is not None else None,
        stop_price=d(stop) if stop is not None else None,
    )


def violation(order: Order, **touch: Decimal) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        normalize_order(order, RULES, **touch)
    return caught.value


class TestHelpers:
    def test_round_down_to_step(self) -> None:
        assert round_down_to_step(d("1.23456"), d("0.001")) == d("1.234")
        assert round_down_to_step(d("0.74"), d("0.25")) == d("0.50")

    def test_is_on_tick_with_a_tick_not_a_power_of_ten(self) -> None:
        assert is_on_tick(d("100.05"), d("0.05"))
        assert not is_on_tick(d("100.07"), d("0.05"))

    def test_exact_for_values_beyond_default_precision(self) -> None:
        # 30 significant digits: Python's default 28-digit context would round these.
        assert is_on_tick(d("12345678901234567890.1234567890"), d("0.0000000001"))
        assert not is_on_tick(d("12345678901234567890.12345678901"), d("0.0000000001"))


class TestPrices:
    def test_accepts_an_order_that_follows_every_rule(self) -> None:
        order = make_order(quantity="1.5", limit="100.01")
        assert normalize_order(order, RULES) is order

    def test_rejects_a_limit_price_off_the_tick(self) -> None:
        error = violation(make_order(limit="100.005"))
        assert error.rule is RuleCode.PRICE_OFF_TICK
        assert error.code == "price_off_tick"
        assert error.status_code == 422
        assert isinstance(error, ValidationFailedError)
        assert error.details == {
            "rule": "price_off_tick",
            "price": "100.005",
            "tick_size": "0.01",
            "nearest_below": "100.00",
            "nearest_above": "100.01",
        }
        assert error.message == (
            "limit price 100.005 is not a multiple of the tick size 0.01 "
            "(nearest valid: 100.00 or 100.01)"
        )

    def test_rejects_a_stop_price_off_the_tick(self) -> None:
        order = make_order(order_type=OrderType.STOP, limit=None, stop="105.001")
        error = violation(order)
        assert error.rule is RuleCode.STOP_PRICE_OFF_TICK
        assert error.details["nearest_below"] == "105.00"

    def test_checks_both_prices_of_a_stop_limit(self) -> None:
        order = make_order(order_type=OrderType.STOP_LIMIT, limit="106", stop="105.009")
        assert violation(order).rule is RuleCode.STOP_PRICE_OFF_TICK


class TestQuantity:
    def test_rounds_the_quantity_down_to_the_step(self) -> None:
        normalized = normalize_order(make_order(quantity="0.12349"), RULES)
        assert normalized.quantity == d("0.1234")
        assert normalized.remaining == d("0.1234")

    def test_rejects_a_quantity_that_rounds_to_zero(self) -> None:
        error = violation(make_order(quantity="0.00005"))
        assert error.rule is RuleCode.QUANTITY_BELOW_STEP
        assert error.details["rounded_quantity"] == "0.0000"

    def test_rejects_below_the_minimum_quantity(self) -> None:
        error = violation(make_order(quantity="0.0009", limit="20000"))
        assert error.rule is RuleCode.QUANTITY_BELOW_MINIMUM
        assert error.details["min_quantity"] == "0.001"

    def test_checks_the_minimum_after_rounding(self) -> None:
        # 0.00109 rounds to 0.0010, the minimum: accepted. 0.00099 rounds to 0.0009: not.
        order = normalize_order(make_order(quantity="0.00109", limit="20000"), RULES)
        assert order.quantity == d("0.0010")
        error = violation(make_order(quantity="0.00099", limit="20000"))
        assert error.rule is RuleCode.QUANTITY_BELOW_MINIMUM
        assert error.details["rounded_quantity"] == "0.0009"

    def test_rejects_above_the_maximum_quantity(self) -> None:
        error = violation(make_order(quantity="100.0001"))
        assert error.rule is RuleCode.QUANTITY_ABOVE_MAXIMUM
        assert error.details["max_quantity"] == "100"


class TestNotional:
    def test_rejects_below_the_minimum_notional_at_the_limit_price(self) -> None:
        # 0.1 x 99.99 = 9.999 < 10
        error = violation(make_order(quantity="0.1", limit="99.99"))
        assert error.rule is RuleCode.NOTIONAL_BELOW_MINIMUM
        assert error.details["notional"] == "9.999"
        assert error.details["price"] == "99.99"

    def test_accepts_exactly_the_minimum_notional(self) -> None:
        # 0.1 x 100 = 10.0
        order = make_order(quantity="0.1", limit="100")
        assert normalize_order(order, RULES) is order

    def test_checks_the_notional_on_the_rounded_quantity(self) -> None:
        # 0.10009 asked, 0.1000 after rounding: 0.1000 x 99.99 = 9.999
        error = violation(make_order(quantity="0.10009", limit="99.99"))
        assert error.rule is RuleCode.NOTIONAL_BELOW_MINIMUM
        assert error.details["quantity"] == "0.1000"

    def test_market_buy_is_valued_at_the_ask_and_sell_at_the_bid(self) -> None:
        # 0.1 at ask 101 = 10.1 passes; the same 0.1 at bid 99 = 9.9 fails.
        buy = make_order(order_type=OrderType.MARKET, quantity="0.1", limit=None)
        assert normalize_order(buy, RULES, bid=d("99"), ask=d("101")) is buy
        sell = make_order(
            side=OrderSide.SELL, order_type=OrderType.MARKET, quantity="0.1", limit=None
        )
        error = violation(sell, bid=d("99"), ask=d("101"))
        assert error.rule is RuleCode.NOTIONAL_BELOW_MINIMUM
        assert error.details["notional"] == "9.9"

    def test_market_order_needs_its_touch(self) -> None:
        order = make_order(order_type=OrderType.MARKET, quantity="0.1", limit=None)
        error = violation(order, bid=d("99"))
        assert error.rule is RuleCode.NO_MARKET_PRICE
        assert error.message == "no asks in the BTC-USD book to price a market buy"

    def test_stop_is_valued_at_its_stop_price(self) -> None:
        # 0.1 x 99.99 = 9.999 < 10, whatever the market.
        order = make_order(order_type=OrderType.STOP, quantity="0.1", limit=None, stop="99.99")
        error = violation(order, bid=d("200"), ask=d("201"))
        assert error.rule is RuleCode.NOTIONAL_BELOW_MINIMUM
        assert error.details["price"] == "99.99"

    def test_stop_limit_is_valued_at_its_limit(self) -> None:
        # 0.1 x 99.99 at the limit fails though the stop (150) would pass.
        order = make_order(
            order_type=OrderType.STOP_LIMIT, quantity="0.1", limit="99.99", stop="150"
        )
        assert violation(order).details["price"] == "99.99"


class TestMisuse:
    def test_rejects_rules_of_another_symbol(self) -> None:
        with pytest.raises(ValueError, match="rules for BTC-USD"):
            normalize_order(make_order(symbol="ETH-USD"), RULES)
