"""The pre-trade risk check on hand-computed accounts: each rule at its boundary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.enums import OrderSide
from services.agents.risk import (
    CheckName,
    Holding,
    OrderIntent,
    RiskCheck,
    RiskLimits,
    RiskSnapshot,
    RiskVerdict,
    check_order,
)

D = Decimal
BTC = "BTC/USD"
ETH = "ETH/USD"
SOL = "SOL/USD"
BUY_CHECKS = ("confidence", "cash", "order_size", "position_size", "open_positions", "daily_loss")


def limits(
    *,
    max_position_pct: str = "10",
    max_order_pct: str | None = "10",
    max_open_positions: int | None = 3,
    max_daily_loss_pct: str | None = "5",
    min_confidence: str = "0.5",
) -> RiskLimits:
    return RiskLimits(
        max_position_pct=D(max_position_pct),
        max_order_pct=D(max_order_pct) if max_order_pct is not None else None,
        max_open_positions=max_open_positions,
        max_daily_loss_pct=D(max_daily_loss_pct) if max_daily_loss_pct is not None else None,
        min_confidence=D(min_confidence),
    )


def snapshot(
    *,
    equity: str = "100000",
    cash_free: str = "50000",
    holdings: Mapping[str, Holding] | None = None,
    day_start_equity: str | None = "100000",
) -> RiskSnapshot:
    return RiskSnapshot(
        equity=D(equity),
        cash_free=D(cash_free),
        holdings=holdings or {},
        day_start_equity=D(day_start_equity) if day_start_equity is not None else None,
    )


def held(quantity: str, mark: str, free: str | None = None) -> Holding:
    return Holding(quantity_free=D(free or quantity), quantity=D(quantity), mark_price=D(mark))


def intent(
    quantity: str,
    *,
    symbol: str = BTC,
    side: OrderSide = OrderSide.BUY,
    price: str = "1000",
    confidence: str = "0.8",
    fee_bps: str = "0",
) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        price=D(price),
        confidence=D(confidence),
        fee_bps=D(fee_bps),
    )


def check(verdict: RiskVerdict, name: str) -> RiskCheck:
    return next(c for c in verdict.checks if c.name == name)


def names(verdict: RiskVerdict) -> tuple[str, ...]:
    return tuple(c.name for c in verdict.checks)


class TestRiskLimits:
    @pytest.mark.parametrize(
        ("tolerance", "min_confidence"),
        [("0", "0.5"), ("0.5", "0.35"), ("1", "0.2")],
    )
    def test_for_agent_lowers_min_confidence_with_tolerance(
        self, tolerance: str, min_confidence: str
    ) -> None:
        result = RiskLimits.for_agent(risk_tolerance=D(tolerance), max_position_pct=D(10))
        assert result.min_confidence == D(min_confidence)

    def test_for_agent_caps_an_order_at_the_max_position(self) -> None:
        result = RiskLimits.for_agent(
            risk_tolerance=D("0.5"),
            max_position_pct=D(15),
            max_open_positions=4,
            max_daily_loss_pct=D(3),
        )
        assert result == RiskLimits(
            max_position_pct=D(15),
            max_order_pct=D(15),
            max_open_positions=4,
            max_daily_loss_pct=D(3),
            min_confidence=D("0.35"),
        )

    def test_for_agent_rejects_tolerance_outside_0_1(self) -> None:
        with pytest.raises(ValueError, match="risk_tolerance"):
            RiskLimits.for_agent(risk_tolerance=D("1.1"), max_position_pct=D(10))

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("max_position_pct", D(0)),
            ("max_position_pct", D("100.01")),
            ("max_order_pct", D(0)),
            ("max_daily_loss_pct", D(-1)),
            ("max_open_positions", -1),
            ("min_confidence", D("1.5")),
        ],
    )
    def test_rejects_a_limit_out_of_range(self, field: str, value: Decimal | int) -> None:
        change: dict[str, Any] = {field: value}
        with pytest.raises(ValueError, match=field):
            replace(limits(), **change)

    def test_accepts_a_full_position_limit(self) -> None:
        assert limits(max_position_pct="100").max_position_pct == 100


class TestOrderIntent:
    @pytest.mark.parametrize(
        ("quantity", "price", "message"),
        [("0", "1", "quantity"), ("-1", "1", "quantity"), ("1", "0", "price")],
    )
    def test_rejects_non_positive_quantity_or_price(
        self, quantity: str, price: str, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            intent(quantity, price=price)


class TestCheckBuy:
    def test_approves_an_order_within_every_limit(self) -> None:
        verdict = check_order(intent("5", fee_bps="10"), snapshot(), limits())
        assert verdict.approved
        assert names(verdict) == BUY_CHECKS
        assert verdict.reasons == ()

    def test_reports_every_failed_rule_together(self) -> None:
        account = snapshot(
            equity="100000",
            cash_free="5000",
            holdings={BTC: held("1", "100"), ETH: held("1", "100")},
            day_start_equity="106000",
        )
        rules = limits(max_open_positions=2)
        verdict = check_order(
            intent("120", symbol=SOL, price="100", confidence="0.3"), account, rules
        )
        assert not verdict.approved
        assert verdict.reasons == (
            "confidence 0.3 is below the minimum 0.5",
            "order cost 12000 USD (notional 12000 + fee 0) exceeds free cash 5000 USD",
            "order notional 12000 USD is 12% of equity, over the 10% limit",
            "position after the order 12000 USD is 12% of equity, over the 10% limit",
            "the order opens a position in SOL/USD: 3 positions after it; limit 2",
            "today's loss 6000 USD is 5.66% of start-of-day equity 106000 USD, "
            "at or over the 5% limit: buys are refused for the day",
        )

    def test_confidence_at_the_minimum_passes(self) -> None:
        verdict = check_order(intent("1", confidence="0.5"), snapshot(), limits())
        assert check(verdict, "confidence") == RiskCheck(
            CheckName.CONFIDENCE, True, "confidence 0.5 meets the minimum 0.5"
        )

    def test_confidence_below_the_minimum_fails(self) -> None:
        verdict = check_order(intent("1", confidence="0.49"), snapshot(), limits())
        assert verdict.reasons == ("confidence 0.49 is below the minimum 0.5",)

    def test_cash_covering_notional_and_fee_exactly_passes(self) -> None:
        # 5 x 1000 = 5000 notional, 10 bps fee = 5.
        verdict = check_order(intent("5", fee_bps="10"), snapshot(cash_free="5005"), limits())
        assert check(verdict, "cash") == RiskCheck(
            CheckName.CASH,
            True,
            "order cost 5005 USD (notional 5000 + fee 5) is within free cash 5005 USD",
        )

    def test_cash_short_by_the_fee_fails(self) -> None:
        account = snapshot(cash_free="5004.99999999")
        verdict = check_order(intent("5", fee_bps="10"), account, limits())
        assert verdict.reasons == (
            "order cost 5005 USD (notional 5000 + fee 5) exceeds free cash 5004.99999999 USD",
        )

    def test_fee_is_rounded_as_the_exchange_charges_it(self) -> None:
        # 0.00000003 x 1000 x 15 bps = 0.000000045 -> 0.00000005 (half up).
        verdict = check_order(intent("0.00000003", fee_bps="15"), snapshot(), limits())
        assert "fee 0.00000005)" in check(verdict, "cash").detail

    def test_order_at_the_order_limit_passes(self) -> None:
        rules = limits(max_position_pct="50", max_order_pct="5")
        verdict = check_order(intent("5"), snapshot(), rules)
        assert check(verdict, "order_size") == RiskCheck(
            CheckName.ORDER_SIZE,
            True,
            "order notional 5000 USD is 5% of equity, within the 5% limit",
        )

    def test_order_just_over_the_order_limit_fails(self) -> None:
        rules = limits(max_position_pct="50", max_order_pct="5")
        verdict = check_order(intent("5.00001"), snapshot(), rules)
        assert verdict.reasons == ("order notional 5000.01 USD is 5% of equity, over the 5% limit",)

    def test_no_order_limit_skips_the_order_size_check(self) -> None:
        verdict = check_order(intent("1"), snapshot(), limits(max_order_pct=None))
        assert "order_size" not in names(verdict)

    def test_position_counts_the_holding_at_its_mark(self) -> None:
        # 2 held at a mark of 2500 = 5000, plus 5 x 1000 bought = 10000: 10% exactly.
        account = snapshot(holdings={BTC: held("2", "2500")})
        verdict = check_order(intent("5"), account, limits())
        assert verdict.approved
        assert check(verdict, "position_size").detail == (
            "position after the order 10000 USD is 10% of equity, within the 10% limit"
        )

    def test_position_just_over_the_limit_fails(self) -> None:
        account = snapshot(holdings={BTC: held("2", "2500.01")})
        verdict = check_order(intent("5"), account, limits(max_order_pct=None))
        assert verdict.reasons == (
            "position after the order 10000.02 USD is 10% of equity, over the 10% limit",
        )

    def test_opening_the_last_allowed_position_passes(self) -> None:
        account = snapshot(holdings={ETH: held("1", "100"), SOL: held("1", "100")})
        verdict = check_order(intent("1"), account, limits(max_open_positions=3))
        assert check(verdict, "open_positions") == RiskCheck(
            CheckName.OPEN_POSITIONS,
            True,
            "the order opens a position in BTC/USD: 3 positions after it; limit 3",
        )

    def test_opening_one_position_too_many_fails(self) -> None:
        account = snapshot(holdings={ETH: held("1", "100"), SOL: held("1", "100")})
        verdict = check_order(intent("1"), account, limits(max_open_positions=2))
        assert verdict.reasons == (
            "the order opens a position in BTC/USD: 3 positions after it; limit 2",
        )

    def test_adding_to_a_held_symbol_opens_no_position(self) -> None:
        account = snapshot(holdings={BTC: held("1", "100"), ETH: held("1", "100")})
        verdict = check_order(intent("1"), account, limits(max_open_positions=2))
        assert verdict.approved
        assert "open_positions" not in names(verdict)

    def test_an_emptied_holding_is_no_position(self) -> None:
        account = snapshot(holdings={BTC: held("0", "100"), ETH: held("1", "100")})
        verdict = check_order(intent("1"), account, limits(max_open_positions=2))
        assert check(verdict, "open_positions").detail == (
            "the order opens a position in BTC/USD: 2 positions after it; limit 2"
        )

    def test_no_position_count_limit_skips_the_check(self) -> None:
        verdict = check_order(intent("1"), snapshot(), limits(max_open_positions=None))
        assert "open_positions" not in names(verdict)

    def test_loss_just_under_the_daily_limit_passes(self) -> None:
        account = snapshot(equity="95000.01", day_start_equity="100000")
        verdict = check_order(intent("1"), account, limits())
        assert check(verdict, "daily_loss") == RiskCheck(
            CheckName.DAILY_LOSS,
            True,
            "today's loss 4999.99 USD is 5% of start-of-day equity 100000 USD, under the 5% limit",
        )

    def test_loss_reaching_the_daily_limit_refuses_buys(self) -> None:
        account = snapshot(equity="95000", day_start_equity="100000")
        verdict = check_order(intent("1"), account, limits())
        assert verdict.reasons == (
            "today's loss 5000 USD is 5% of start-of-day equity 100000 USD, "
            "at or over the 5% limit: buys are refused for the day",
        )

    def test_a_gain_today_passes_the_daily_loss_check(self) -> None:
        account = snapshot(equity="101000", day_start_equity="100000")
        verdict = check_order(intent("1"), account, limits())
        assert check(verdict, "daily_loss").detail == (
            "no loss today: equity 101000 USD against 100000 USD at the start of the day"
        )

    def test_unknown_day_start_passes_and_says_so(self) -> None:
        verdict = check_order(intent("1"), snapshot(day_start_equity=None), limits())
        assert check(verdict, "daily_loss") == RiskCheck(
            CheckName.DAILY_LOSS, True, "start-of-day equity unknown: daily loss not checked"
        )

    def test_no_daily_loss_limit_skips_the_check(self) -> None:
        account = snapshot(equity="50000", day_start_equity="100000")
        verdict = check_order(intent("1"), account, limits(max_daily_loss_pct=None))
        assert "daily_loss" not in names(verdict)

    @pytest.mark.parametrize("equity", ["0", "-250"])
    def test_non_positive_equity_refuses_every_buy(self, equity: str) -> None:
        account = snapshot(equity=equity, day_start_equity=None)
        verdict = check_order(intent("0.001"), account, limits())
        reason = f"equity is {equity} USD, not positive: no buy can be sized against it"
        assert verdict.reasons == (reason, reason)
        assert [c.name for c in verdict.checks if not c.passed] == ["order_size", "position_size"]

    def test_non_positive_equity_refuses_even_without_an_order_limit(self) -> None:
        verdict = check_order(intent("0.001"), snapshot(equity="0"), limits(max_order_pct=None))
        assert not verdict.approved
        assert not check(verdict, "position_size").passed

    def test_details_name_the_quote_currency(self) -> None:
        account = RiskSnapshot(
            equity=D(1000),
            cash_free=D(1000),
            holdings={},
            day_start_equity=None,
            quote_currency="EUR",
        )
        verdict = check_order(intent("0.01"), account, limits())
        assert check(verdict, "cash").detail == (
            "order cost 10 EUR (notional 10 + fee 0) is within free cash 1000 EUR"
        )


class TestCheckSell:
    def test_a_sell_skips_size_and_loss_checks(self) -> None:
        # Far over every buy limit, on a day past the loss limit: a sell reduces risk.
        account = snapshot(
            equity="1000",
            cash_free="0",
            holdings={BTC: held("50", "1000")},
            day_start_equity="100000",
        )
        sell = intent("50", side=OrderSide.SELL)
        verdict = check_order(sell, account, limits(max_open_positions=0))
        assert verdict.approved
        assert names(verdict) == ("confidence", "holding")
        assert check(verdict, "holding").detail == "sells 50 BTC/USD of 50 free"

    def test_selling_more_than_is_free_fails(self) -> None:
        account = snapshot(holdings={BTC: held("2", "1000", free="1.5")})
        verdict = check_order(intent("1.50000001", side=OrderSide.SELL), account, limits())
        assert verdict.reasons == (
            "sells 1.50000001 BTC/USD but only 1.5 is free (spot: no short selling)",
        )

    def test_short_sell_is_refused(self) -> None:
        verdict = check_order(intent("1", side=OrderSide.SELL), snapshot(), limits())
        assert not verdict.approved
        assert verdict.reasons == ("sells 1 BTC/USD but none is held (spot: no short selling)",)

    def test_low_confidence_sell_is_refused(self) -> None:
        account = snapshot(holdings={BTC: held("1", "1000")})
        sell = intent("1", side=OrderSide.SELL, confidence="0.2")
        verdict = check_order(sell, account, limits())
        assert verdict.reasons == ("confidence 0.2 is below the minimum 0.5",)


class TestRiskVerdict:
    def test_to_record_is_json_ready(self) -> None:
        verdict = check_order(intent("1", side=OrderSide.SELL), snapshot(), limits())
        assert verdict.to_record() == {
            "approved": False,
            "checks": [
                {
                    "name": "confidence",
                    "passed": True,
                    "detail": "confidence 0.8 meets the minimum 0.5",
                },
                {
                    "name": "holding",
                    "passed": False,
                    "detail": "sells 1 BTC/USD but none is held (spot: no short selling)",
                },
            ],
        }

    def test_an_empty_verdict_is_approved(self) -> None:
        assert RiskVerdict(()).approved


amounts = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False)
positive = st.decimals(min_value=D("0.01"), max_value=10**4, places=2, allow_nan=False)
unit = st.decimals(min_value=0, max_value=1, places=2, allow_nan=False)


@given(
    side=st.sampled_from(OrderSide),
    quantity=positive,
    price=positive,
    confidence=unit,
    equity=st.decimals(min_value=-1000, max_value=10**6, places=2, allow_nan=False),
    cash=amounts,
    held_quantity=st.one_of(st.none(), amounts),
    day_start=st.one_of(st.none(), amounts),
    max_open=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
)
def test_verdict_is_approved_iff_no_check_failed(
    side: OrderSide,
    quantity: Decimal,
    price: Decimal,
    confidence: Decimal,
    equity: Decimal,
    cash: Decimal,
    held_quantity: Decimal | None,
    day_start: Decimal | None,
    max_open: int | None,
) -> None:
    holdings = {} if held_quantity is None else {BTC: Holding(held_quantity, held_quantity, price)}
    account = RiskSnapshot(equity, cash, holdings, day_start)
    rules = RiskLimits.for_agent(
        risk_tolerance=D("0.5"),
        max_position_pct=D(20),
        max_open_positions=max_open,
        max_daily_loss_pct=D(5),
    )
    order = OrderIntent(BTC, side, quantity, price, confidence, D(10))
    verdict = check_order(order, account, rules)
    failed = [c for c in verdict.checks if not c.passed]
    assert verdict.approved == (not failed)
    assert verdict.reasons == tuple(c.detail for c in failed)
    assert all(c.detail for c in verdict.checks)
    assert len({c.name for c in verdict.checks}) == len(verdict.checks)
    if side is OrderSide.SELL:
        assert names(verdict) == ("confidence", "holding")
    else:
        assert names(verdict)[:2] == ("confidence", "cash")
        if equity <= 0:
            assert not verdict.approved
