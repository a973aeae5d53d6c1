"""The simulated account's ledger: exact Decimal fills with the paper exchange's fee
rounding, and the invariant cash + cost basis = initial + realized - fees after every
fill, whatever the sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.enums import OrderSide
from services.backtests.simulated_account import SimulatedAccount
from services.paper_trading.matching import fee_for

D = Decimal
T0 = datetime(2025, 1, 1, tzinfo=UTC)
STEP = D("0.0001")


def buy(account: SimulatedAccount, quantity: str, price: str, bps: str = "10") -> None:
    account.buy("BTC/USD", D(quantity), D(price), D(bps), time=T0, decided_at=T0)


class TestFills:
    def test_a_buy_pays_notional_and_fee_and_keeps_the_cost_basis(self) -> None:
        account = SimulatedAccount(D(10000))
        buy(account, "0.1", "50000.12345678")
        fee = fee_for(D("5000.012345678"), D(10))
        assert account.cash == D(10000) - D("5000.012345678") - fee
        assert account.lots["BTC/USD"].cost == D("5000.012345678")
        assert account.reconciles()

    def test_a_sell_closes_a_trade_net_of_both_fees(self) -> None:
        account = SimulatedAccount(D(10000))
        buy(account, "0.1", "50000")
        account.sell(
            "BTC/USD", D("0.1"), D(51000), D(10), time=T0 + timedelta(hours=1), decided_at=T0
        )
        (closed,) = account.trades
        assert closed.trade.pnl == D(5100) - D("5.1") - D(5000) - D(5)
        assert closed.trade.fee == D("10.1")
        assert account.lots == {}
        assert account.reconciles()

    def test_a_sell_beyond_the_position_is_a_bug(self) -> None:
        account = SimulatedAccount(D(10000))
        buy(account, "0.1", "50000")
        with pytest.raises(ValueError, match="beyond the position"):
            account.sell("BTC/USD", D("0.2"), D(50000), D(10), time=T0, decided_at=T0)

    def test_affordable_never_spends_more_than_the_cash(self) -> None:
        account = SimulatedAccount(D("1000.5"))
        quantity = account.affordable(D("333.33"), D(20), STEP)
        notional = quantity * D("333.33")
        assert notional + fee_for(notional, D(20)) <= account.cash
        more = quantity + STEP
        assert more * D("333.33") + fee_for(more * D("333.33"), D(20)) > account.cash


class TestInvariant:
    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.booleans(),
                st.integers(min_value=1, max_value=10_000),
                st.integers(min_value=1, max_value=10**10),
                st.sampled_from([D(0), D(10), D("7.5"), D(25)]),
            ),
            min_size=1,
            max_size=30,
        )
    )
    def test_the_ledger_reconciles_after_any_sequence_of_fills(
        self, orders: list[tuple[bool, int, int, Decimal]]
    ) -> None:
        account = SimulatedAccount(D(100000))
        for is_buy, steps, price_units, bps in orders:
            price = D(price_units).scaleb(-4)
            if is_buy:
                quantity = min(STEP * steps, account.affordable(price, bps, STEP))
                if quantity > 0:
                    account.buy("X", quantity, price, bps, time=T0, decided_at=T0)
            elif account.held("X") > 0:
                quantity = min(STEP * steps, account.held("X"))
                account.sell("X", quantity, price, bps, time=T0, decided_at=T0)
            assert account.reconciles()
            assert account.cash >= 0
        assert sum(1 for f in account.fills if f.side is OrderSide.SELL) == len(account.trades)
