"""Rebalance planning on hand-computed holdings, quotes and rules."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from connectors.base import PairRules
from models.enums import OrderSide
from services.paper_trading.rules import RuleCode
from services.portfolio.rebalance import Holding, PlannedOrder, Quote, RebalancePlan, plan_rebalance

D = Decimal
BTC = "BTC/USD"
ETH = "ETH/USD"
QUOTES = {
    BTC: Quote(mark=D(100), bid=D(99), ask=D(101)),
    ETH: Quote(mark=D(20), bid=D("19.5"), ask=D("20.5")),
}


def rules(
    symbol: str, *, step: str = "0.0001", min_quantity: str = "0.0001", max_quantity: str = "100"
) -> PairRules:
    base, quote = symbol.split("/")
    return PairRules(
        symbol=symbol,
        base_asset=base,
        quote_asset=quote,
        tick_size=D("0.01"),
        step_size=D(step),
        min_quantity=D(min_quantity),
        max_quantity=D(max_quantity),
        min_notional=D(10),
    )


RULES = {BTC: rules(BTC), ETH: rules(ETH, step="0.001", min_quantity="0.001")}


def plan(
    targets: Mapping[str, str],
    *,
    cash: str = "1000",
    holdings: Mapping[str, Holding] | None = None,
    fee_bps: str = "0",
    pair_rules: Mapping[str, PairRules] = RULES,
) -> RebalancePlan:
    return plan_rebalance(
        cash=D(cash),
        free_cash=D(cash),
        holdings=holdings or {},
        targets={s: D(w) for s, w in targets.items()},
        quotes=QUOTES,
        rules=pair_rules,
        fee_bps={s: D(fee_bps) for s in pair_rules},
    )


def trades(result: RebalancePlan) -> list[tuple[str, OrderSide, Decimal]]:
    return [(o.symbol, o.side, o.quantity) for o in result.orders if not o.skipped]


class TestPlanRebalance:
    def test_buys_from_cash_at_the_ask(self) -> None:
        result = plan({BTC: "0.5", ETH: "0.3"})
        assert result.equity == 1000
        assert result.orders == (
            PlannedOrder(BTC, OrderSide.BUY, D(5), D(101), D(505)),
            PlannedOrder(ETH, OrderSide.BUY, D(15), D("20.5"), D("307.5")),
        )

    def test_allocations_show_current_and_target(self) -> None:
        holdings = {BTC: Holding(D(2), D(2))}
        allocation = plan({BTC: "0.25"}, cash="800", holdings=holdings).allocations[0]
        assert (allocation.current_value, allocation.current_weight) == (D(200), D("0.2"))
        assert (allocation.target_value, allocation.target_quantity) == (D(250), D("2.5"))

    def test_buys_are_scaled_to_the_cash_including_fees(self) -> None:
        # 6 BTC and 20 ETH at the ask plus 0.1% cost 1017.016: scaled by 1000/1017.016.
        result = plan({BTC: "0.6", ETH: "0.4"}, fee_bps="10")
        assert trades(result) == [
            (BTC, OrderSide.BUY, D("5.8996")),
            (ETH, OrderSide.BUY, D("19.665")),
        ]
        cost = sum(o.notional for o in result.orders) * D("1.001")
        assert cost <= 1000

    def test_unnamed_holdings_are_sold_and_sells_come_first(self) -> None:
        holdings = {BTC: Holding(D(10), D(10)), ETH: Holding(D(50), D(40))}
        # Equity 100 + 1000 + 1000; ETH to 20% = 21 ETH, 29 to sell of the 40 free.
        result = plan({ETH: "0.2"}, cash="100", holdings=holdings)
        assert result.orders == (
            PlannedOrder(BTC, OrderSide.SELL, D(10), D(99), D(990)),
            PlannedOrder(ETH, OrderSide.SELL, D(29), D("19.5"), D("565.5")),
        )

    def test_sells_never_exceed_the_free_quantity(self) -> None:
        holdings = {BTC: Holding(D(10), D(3))}
        assert trades(plan({BTC: "0"}, cash="0", holdings=holdings)) == [
            (BTC, OrderSide.SELL, D(3))
        ]

    def test_sell_proceeds_fund_the_buys(self) -> None:
        # Selling 10 BTC at 99 brings 990; 50 ETH at 20.5 would cost 1025.
        holdings = {BTC: Holding(D(10), D(10))}
        result = plan({ETH: "1"}, cash="0", holdings=holdings)
        assert trades(result) == [(BTC, OrderSide.SELL, D(10)), (ETH, OrderSide.BUY, D("48.292"))]

    def test_on_target_places_nothing(self) -> None:
        holdings = {BTC: Holding(D(5), D(5))}
        assert plan({BTC: "0.5"}, cash="500", holdings=holdings).orders == ()

    def test_quantity_above_maximum_is_capped(self) -> None:
        capped = {**RULES, BTC: rules(BTC, max_quantity="2")}
        assert trades(plan({BTC: "0.5"}, pair_rules=capped)) == [(BTC, OrderSide.BUY, D(2))]


class TestSkippedOrders:
    def skip_of(self, result: RebalancePlan) -> tuple[RuleCode | None, Decimal]:
        (order,) = result.orders
        assert order.skipped
        assert order.skip_reason
        return order.skip_code, order.quantity

    def test_below_min_notional(self) -> None:
        # 5.05 BTC wanted, 5 held: 0.05 at 101 is 5.05, under the minimum of 10.
        result = plan({BTC: "0.505"}, cash="500", holdings={BTC: Holding(D(5), D(5))})
        assert self.skip_of(result) == (RuleCode.NOTIONAL_BELOW_MINIMUM, D("0.05"))

    def test_below_step(self) -> None:
        result = plan({BTC: "0.500004"}, cash="500", holdings={BTC: Holding(D(5), D(5))})
        assert self.skip_of(result) == (RuleCode.QUANTITY_BELOW_STEP, D(0))

    def test_below_min_quantity(self) -> None:
        strict = {**RULES, ETH: rules(ETH, step="0.001", min_quantity="1")}
        result = plan({ETH: "0.01"}, pair_rules=strict)
        assert self.skip_of(result) == (RuleCode.QUANTITY_BELOW_MINIMUM, D("0.5"))

    def test_a_skipped_sell_brings_no_proceeds(self) -> None:
        holdings = {BTC: Holding(D("0.05"), D("0.05"))}
        result = plan({ETH: "1"}, cash="100", holdings=holdings)
        # Equity 105: 5.25 ETH at 20.5 cost 107.625 > 100, scaled to the cash alone.
        assert [o.skip_code for o in result.orders] == [RuleCode.NOTIONAL_BELOW_MINIMUM, None]
        assert result.orders[1].quantity == D("4.878")


class TestRefusals:
    @pytest.mark.parametrize("targets", [{BTC: "0.6", ETH: "0.5"}, {BTC: "-0.1"}])
    def test_bad_weights(self, targets: dict[str, str]) -> None:
        with pytest.raises(ValueError, match="weights"):
            plan(targets)

    def test_nothing_to_rebalance(self) -> None:
        with pytest.raises(ValueError, match="equity"):
            plan({BTC: "0.5"}, cash="0")
