"""The limits measured on an account, with and without an order (services/risk/limits.py):
hand-made states, each rule's edge, and what an order is refused for."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from models.enums import OrderSide
from models.risk import LimitType
from services.risk.limits import breaches, evaluate
from services.risk.state import AccountState, LimitRule, OrderIntent

D = Decimal
ACCOUNT = uuid.uuid4()


def rule(kind: LimitType, value: str, **fields: object) -> LimitRule:
    return LimitRule(id=uuid.uuid4(), limit_type=kind, limit_value=D(value), **fields)  # type: ignore[arg-type]


def state(**fields: object) -> AccountState:
    base: dict[str, object] = {
        "account_id": ACCOUNT,
        "equity": D(10000),
        "day_start_equity": D(10000),
        "peak_equity": D(10000),
        "exposures": {"BTC/USD": D(3000), "ETH/USD": D(1000)},
        "open_orders": {"BTC/USD": 2, "ETH/USD": 1},
    }
    base.update(fields)
    return AccountState(**base)  # type: ignore[arg-type]


def buy(notional: str, symbol: str = "BTC/USD", *, rests: bool = False) -> OrderIntent:
    return OrderIntent(symbol=symbol, side=OrderSide.BUY, notional=D(notional), rests=rests)


def sell(notional: str, symbol: str = "BTC/USD", *, rests: bool = False) -> OrderIntent:
    return OrderIntent(symbol=symbol, side=OrderSide.SELL, notional=D(notional), rests=rests)


def only(readings: list, *, breached: bool) -> None:  # type: ignore[type-arg]
    assert len(readings) == 1
    assert readings[0].breached is breached, readings[0].reason


class TestPositionSize:
    def test_a_buy_to_exactly_the_limit_passes_and_one_unit_more_is_refused(self) -> None:
        limit = rule(LimitType.POSITION_SIZE, "5000", symbol="BTC/USD")
        only(evaluate(state(), [limit], buy("2000")), breached=False)
        (reading,) = evaluate(state(), [limit], buy("2000.01"))
        assert reading.breached
        assert reading.current == D(3000)
        assert reading.projected == D("5000.01")
        assert "3000" in reading.reason
        assert "5000.01" in reading.reason
        assert "5000" in reading.reason

    def test_a_symbol_limit_does_not_hold_on_another_symbol(self) -> None:
        limit = rule(LimitType.POSITION_SIZE, "100", symbol="BTC/USD")
        assert evaluate(state(), [limit], buy("5000", "ETH/USD")) == []

    def test_a_global_limit_holds_on_each_symbol_on_its_own(self) -> None:
        limit = rule(LimitType.POSITION_SIZE, "3500")
        only(evaluate(state(), [limit], buy("2000", "ETH/USD")), breached=False)
        only(evaluate(state(), [limit], buy("600", "BTC/USD")), breached=True)

    def test_without_an_order_the_largest_position_is_measured(self) -> None:
        (reading,) = evaluate(state(), [rule(LimitType.POSITION_SIZE, "2500")])
        assert reading.current == D(3000)
        assert reading.breached

    def test_a_sell_is_never_refused_for_size(self) -> None:
        limit = rule(LimitType.POSITION_SIZE, "100", symbol="BTC/USD")
        only(evaluate(state(), [limit], sell("3000")), breached=False)


class TestExposureAndLeverage:
    def test_gross_exposure_counts_every_symbol(self) -> None:
        limit = rule(LimitType.GROSS_EXPOSURE, "5000")
        only(evaluate(state(), [limit], buy("1000", "SOL/USD")), breached=False)
        only(evaluate(state(), [limit], buy("1001", "SOL/USD")), breached=True)

    def test_leverage_is_gross_exposure_over_equity(self) -> None:
        limit = rule(LimitType.LEVERAGE, "0.5")
        (ok,) = evaluate(state(), [limit], buy("1000"))
        assert ok.projected == D("0.5")
        assert not ok.breached
        only(evaluate(state(), [limit], buy("1001")), breached=True)

    def test_leverage_with_no_positive_equity_refuses_buys_and_says_why(self) -> None:
        (reading,) = evaluate(state(equity=D(0)), [rule(LimitType.LEVERAGE, "2")], buy("1"))
        assert reading.breached
        assert "not positive" in reading.reason
        only(
            evaluate(state(equity=D(0)), [rule(LimitType.LEVERAGE, "2")], sell("1")), breached=False
        )


class TestLosses:
    @pytest.mark.parametrize(
        ("equity", "refused"), [("9500.01", False), ("9500", True), ("9000", True)]
    )
    def test_daily_loss_reached_stops_buys(self, equity: str, refused: bool) -> None:
        limit = rule(LimitType.DAILY_LOSS, "500")
        only(evaluate(state(equity=D(equity)), [limit], buy("10")), breached=refused)

    def test_daily_loss_lets_exits_through(self) -> None:
        limit = rule(LimitType.DAILY_LOSS, "500")
        only(evaluate(state(equity=D(9000)), [limit], sell("10")), breached=False)

    def test_an_unknown_day_start_is_not_checked_and_says_so(self) -> None:
        (reading,) = evaluate(
            state(day_start_equity=None), [rule(LimitType.DAILY_LOSS, "1")], buy("1")
        )
        assert not reading.breached
        assert "not known" in reading.reason

    def test_drawdown_is_a_fraction_of_the_peak(self) -> None:
        limit = rule(LimitType.MAX_DRAWDOWN, "0.1")
        (reading,) = evaluate(state(equity=D(11000), peak_equity=D(12000)), [limit], buy("1"))
        assert reading.current is not None
        assert reading.current.quantize(D("1e-12")) == D("0.083333333333")  # 1000 / 12000
        assert not reading.breached
        only(
            evaluate(state(equity=D(10800), peak_equity=D(12000)), [limit], buy("1")), breached=True
        )


class TestOrders:
    def test_open_orders_count_only_orders_that_may_rest(self) -> None:
        limit = rule(LimitType.MAX_OPEN_ORDERS, "3")
        only(evaluate(state(), [limit], buy("10", rests=True)), breached=True)
        only(evaluate(state(), [limit], buy("10", rests=False)), breached=False)
        only(evaluate(state(), [limit], sell("10", rests=True)), breached=True)

    def test_a_symbol_open_order_limit_counts_that_symbol(self) -> None:
        limit = rule(LimitType.MAX_OPEN_ORDERS, "2", symbol="ETH/USD")
        only(evaluate(state(), [limit], buy("10", "ETH/USD", rests=True)), breached=False)

    def test_order_notional_holds_on_both_sides(self) -> None:
        limit = rule(LimitType.ORDER_NOTIONAL, "1000")
        only(evaluate(state(), [limit], sell("1000.5")), breached=True)
        only(evaluate(state(), [limit], buy("1000")), breached=False)
        (reading,) = evaluate(state(), [limit])
        assert reading.current is None
        assert not reading.breached


def test_an_account_limit_holds_on_its_account_only() -> None:
    limit = rule(LimitType.ORDER_NOTIONAL, "1", account_id=uuid.uuid4())
    assert evaluate(state(), [limit], buy("100")) == []


def test_every_breach_is_reported_at_once() -> None:
    rules = [
        rule(LimitType.ORDER_NOTIONAL, "100"),
        rule(LimitType.GROSS_EXPOSURE, "4100"),
        rule(LimitType.POSITION_SIZE, "10000"),
    ]
    refused = breaches(evaluate(state(), rules, buy("500")))
    assert {r.rule.limit_type for r in refused} == {
        LimitType.ORDER_NOTIONAL,
        LimitType.GROSS_EXPOSURE,
    }
