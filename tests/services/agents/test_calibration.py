"""Calibration of an agent's confidence: on hand-computed outcomes and lots (pure), and
on what real agents traded (realised PnL, the horizon, rebalances)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from core.config import Settings
from database.orm import AgentDecision, Order, TradingAccount
from main_consolidated import create_app
from models.agents import AgentCreate
from models.decisions import Decision
from models.enums import DecisionStatus
from services.agents.calibration import (
    CalibrationBucket,
    Closed,
    FillRecord,
    Outcome,
    calibrate,
    closed_lots,
)
from services.container import Services
from tests.api.conftest import running_app

D = Decimal


def outcomes(confidence: str, *, won: int = 0, lost: int = 0) -> list[Outcome]:
    return [Outcome(D(confidence), True)] * won + [Outcome(D(confidence), False)] * lost


class TestBuckets:
    def test_each_bucket_holds_its_low_edge_and_the_last_holds_1(self) -> None:
        confidences = ["0", "0.19", "0.2", "0.39", "0.4", "0.6", "0.8", "0.99", "1"]
        result = calibrate([Outcome(D(c), False) for c in confidences])
        assert [(b.low, b.high, b.trades) for b in result.buckets] == [
            (D("0"), D("0.2"), 2),
            (D("0.2"), D("0.4"), 2),
            (D("0.4"), D("0.6"), 1),
            (D("0.6"), D("0.8"), 1),
            (D("0.8"), D("1"), 3),
        ]

    def test_0_2_falls_in_the_second_bucket(self) -> None:
        result = calibrate([Outcome(D("0.2"), True)])
        assert [b.trades for b in result.buckets] == [0, 1, 0, 0, 0]

    def test_1_falls_in_the_last_bucket(self) -> None:
        result = calibrate([Outcome(D(1), True)])
        assert [b.trades for b in result.buckets] == [0, 0, 0, 0, 1]

    def test_a_bucket_reports_its_win_rate_and_mean_confidence(self) -> None:
        trades = [Outcome(D("0.2"), True), Outcome(D("0.25"), True), Outcome(D("0.3"), False)]
        assert calibrate(trades).buckets[1] == CalibrationBucket(
            low=D("0.2"),
            high=D("0.4"),
            trades=3,
            wins=2,
            win_rate=D("0.6667"),
            mean_confidence=D("0.2500"),
        )

    def test_an_empty_bucket_has_no_rates(self) -> None:
        bucket = calibrate(outcomes("0.9", won=1)).buckets[0]
        assert (bucket.trades, bucket.wins, bucket.win_rate, bucket.mean_confidence) == (
            0,
            0,
            None,
            None,
        )


class TestBrierScore:
    def test_is_the_mean_squared_error(self) -> None:
        # (0.8 - 1)^2 + (0.6 - 0)^2 + (0.3 - 1)^2 = 0.04 + 0.36 + 0.49 = 0.89; / 3
        trades = [Outcome(D("0.8"), True), Outcome(D("0.6"), False), Outcome(D("0.3"), True)]
        assert calibrate(trades).brier_score == D("0.2967")

    def test_confident_and_right_scores_low(self) -> None:
        trades = [Outcome(D("0.9"), True), Outcome(D("0.1"), False)]
        assert calibrate(trades).brier_score == D("0.0100")

    def test_a_constant_half_scores_a_quarter(self) -> None:
        assert calibrate(outcomes("0.5", won=3, lost=5)).brier_score == D("0.25")

    def test_is_none_without_trades(self) -> None:
        assert calibrate([]).brier_score is None


class TestInformative:
    def test_true_when_high_confidence_wins_more_often(self) -> None:
        result = calibrate(outcomes("0.7", won=7, lost=3) + outcomes("0.49", won=4, lost=6))
        assert (result.trades, result.wins) == (20, 11)
        assert result.high_confidence_win_rate == D("0.7000")
        assert result.low_confidence_win_rate == D("0.4000")
        assert result.informative is True
        assert result.summary == (
            "0.7+ confidence trades won 70% (10), under 0.5 won 40% (10): confidence is informative"
        )

    def test_false_when_the_rates_are_equal(self) -> None:
        result = calibrate(outcomes("0.9", won=5, lost=5) + outcomes("0.1", won=6, lost=6))
        assert result.informative is False
        assert result.summary == (
            "0.7+ confidence trades won 50% (10), under 0.5 won 50% (12): "
            "confidence is not informative"
        )

    def test_false_when_high_confidence_wins_less_often(self) -> None:
        result = calibrate(outcomes("0.8", won=3, lost=7) + outcomes("0.3", won=6, lost=4))
        assert result.informative is False

    def test_compares_exact_rates_not_rounded_ones(self) -> None:
        # 2/3 against 6667/10000: both round to 0.6667, but the low group wins more often.
        result = calibrate(
            outcomes("0.8", won=2, lost=1) + outcomes("0.2", won=6667, lost=3333), min_samples=3
        )
        assert result.high_confidence_win_rate == result.low_confidence_win_rate
        assert result.informative is False

    def test_none_while_a_group_is_below_min_samples(self) -> None:
        result = calibrate(outcomes("0.9", won=9, lost=1) + outcomes("0.1", won=1, lost=8))
        assert result.informative is None
        assert result.summary == (
            "0.7+ confidence trades won 90% (10), under 0.5 won 11.11% (9): "
            "too few trades to tell (10 needed in each group)"
        )

    def test_min_samples_can_be_lowered(self) -> None:
        trades = outcomes("0.9", won=2) + outcomes("0.1", lost=2)
        assert calibrate(trades).informative is None
        assert calibrate(trades, min_samples=2).informative is True

    def test_mid_confidence_trades_are_in_neither_group(self) -> None:
        result = calibrate(outcomes("0.5", won=4) + outcomes("0.69", lost=4))
        assert (result.high_confidence_win_rate, result.low_confidence_win_rate) == (None, None)
        assert result.summary == (
            "0.7+ confidence trades none yet, under 0.5 none yet: "
            "too few trades to tell (10 needed in each group)"
        )

    def test_no_trades(self) -> None:
        result = calibrate([])
        assert (result.trades, result.wins, result.informative) == (0, 0, None)
        assert [b.trades for b in result.buckets] == [0, 0, 0, 0, 0]
        assert result.summary == "No judged trades yet: nothing to calibrate"

    def test_rejects_min_samples_below_1(self) -> None:
        with pytest.raises(ValueError, match="min_samples"):
            calibrate([], min_samples=0)


class TestOutcome:
    @pytest.mark.parametrize("confidence", ["-0.01", "1.01"])
    def test_rejects_confidence_outside_0_1(self, confidence: str) -> None:
        with pytest.raises(ValueError, match="confidence"):
            Outcome(D(confidence), True)


def test_serializes_decimals_as_strings() -> None:
    data = calibrate(outcomes("0.9", won=1, lost=1)).model_dump(mode="json")
    assert data["brier_score"] == "0.4100"
    assert data["high_confidence_win_rate"] == "0.5000"
    assert data["buckets"][4] == {
        "low": "0.8",
        "high": "1",
        "trades": 2,
        "wins": 1,
        "win_rate": "0.5000",
        "mean_confidence": "0.9000",
    }


trades = st.lists(
    st.builds(Outcome, st.decimals(min_value=0, max_value=1, places=2), st.booleans()),
    max_size=60,
)


@given(outcomes=trades, min_samples=st.integers(min_value=1, max_value=15))
def test_calibration_is_consistent(outcomes: list[Outcome], min_samples: int) -> None:
    result = calibrate(outcomes, min_samples=min_samples)
    assert sum(b.trades for b in result.buckets) == result.trades == len(outcomes)
    assert sum(b.wins for b in result.buckets) == result.wins
    for bucket in result.buckets:
        if bucket.trades:
            assert bucket.win_rate is not None
            assert D(0) <= bucket.win_rate <= 1
            assert bucket.mean_confidence is not None
            assert bucket.low <= bucket.mean_confidence <= bucket.high
    if outcomes:
        assert result.brier_score is not None
        assert D(0) <= result.brier_score <= 1
    high = sum(1 for o in outcomes if o.confidence >= D("0.7"))
    low = sum(1 for o in outcomes if o.confidence < D("0.5"))
    assert (result.informative is None) == (high < min_samples or low < min_samples)


# -- realised outcomes: the position a buy opened, closed by later sells -------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUY1, BUY2, SELL1, SELL2 = (uuid.UUID(int=i) for i in range(1, 5))


def fill(
    order: uuid.UUID, side: str, quantity: str, price: str, fee: str, minute: int
) -> FillRecord:
    return FillRecord(
        order_id=order,
        symbol="BTC/USD",
        side="buy" if side == "buy" else "sell",
        quantity=D(quantity),
        price=D(price),
        fee=D(fee),
        executed_at=T0 + timedelta(minutes=minute),
    )


class TestClosedLots:
    def test_a_closed_position_earns_its_proceeds_less_its_cost_and_both_fees(self) -> None:
        # Bought 2 at 100 (fee 0.2), sold 2 at 110 (fee 0.22): 220 - 0.22 - 200 - 0.2.
        closed = closed_lots(
            [fill(BUY1, "buy", "2", "100", "0.2", 0), fill(SELL1, "sell", "2", "110", "0.22", 1)]
        )
        assert closed == {BUY1: Closed(D(2), D("19.58"))}

    def test_sells_close_the_oldest_buy_first(self) -> None:
        closed = closed_lots(
            [
                fill(BUY1, "buy", "1", "100", "0", 0),
                fill(BUY2, "buy", "1", "120", "0", 1),
                fill(SELL1, "sell", "1", "110", "0", 2),
            ]
        )
        assert closed == {BUY1: Closed(D(1), D(10))}

    def test_a_sell_across_two_buys_splits_its_proceeds_and_fee_by_quantity(self) -> None:
        closed = closed_lots(
            [
                fill(BUY1, "buy", "1", "100", "0", 0),
                fill(BUY2, "buy", "3", "120", "0", 1),
                fill(SELL1, "sell", "2", "110", "2", 2),
            ]
        )
        # Proceeds 220 - 2 = 218, 109 per unit: BUY1 +9, BUY2 one unit of three, -11.
        assert closed == {BUY1: Closed(D(1), D(9)), BUY2: Closed(D(1), D(-11))}

    def test_a_partial_close_earns_on_the_part_closed(self) -> None:
        closed = closed_lots(
            [
                fill(BUY1, "buy", "4", "100", "4", 0),
                fill(SELL1, "sell", "1", "90", "0", 1),
                fill(SELL2, "sell", "1", "130", "0", 2),
            ]
        )
        # Each unit cost 101: -11 then +29.
        assert closed == {BUY1: Closed(D(2), D(18))}

    def test_fills_are_taken_in_time_order(self) -> None:
        closed = closed_lots(
            [fill(SELL1, "sell", "1", "110", "0", 5), fill(BUY1, "buy", "1", "100", "0", 0)]
        )
        assert closed == {BUY1: Closed(D(1), D(10))}

    def test_a_sell_beyond_what_is_held_closes_nothing_more(self) -> None:
        closed = closed_lots(
            [fill(BUY1, "buy", "1", "100", "0", 0), fill(SELL1, "sell", "3", "110", "0", 1)]
        )
        assert closed == {BUY1: Closed(D(1), D(10))}

    def test_symbols_keep_their_own_lots(self) -> None:
        other = FillRecord(BUY2, "ETH/USD", "buy", D(1), D(5), D(0), T0)
        closed = closed_lots([other, fill(SELL1, "sell", "1", "110", "0", 1)])
        assert closed == {}


def test_outcomes_say_how_they_were_judged() -> None:
    result = calibrate(
        [Outcome(D("0.8"), True, "realised"), Outcome(D("0.6"), False, "horizon")] * 2
    )
    assert (result.trades, result.realised, result.horizon) == (4, 2, 2)


# -- an agent's calibration from what it traded: the real services on each database --


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
        agents={"scheduler_enabled": False, "calibration_horizon_seconds": 3600},
    )
    app = create_app(settings)
    async with running_app(app):
        yield app.state.services


def trade(side: str, confidence: str, **sizing: str) -> Decision:
    return Decision.model_validate(
        {
            "decision_type": "trade",
            "symbol": "BTC/USD",
            "side": side,
            "reasoning": f"{side} for the test",
            "confidence_score": confidence,
            **sizing,
        }
    )


def agent(name: str) -> AgentCreate:
    return AgentCreate.model_validate(
        {"name": name, "symbols": ["BTC/USD"], "risk_tolerance": "0.5", "llm_provider": "local"}
    )


class TestAgentCalibration:
    async def test_a_closed_position_is_judged_by_its_realised_pnl_at_once(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Closer"))
        bought = await services.agents.execute_decision(
            user, created.id, trade("buy", "0.8", fraction_of_equity="0.05")
        )
        quantity = bought.result["order"]["filled_quantity"]
        sold = await services.agents.execute_decision(
            user, created.id, trade("sell", "0.6", quantity=quantity)
        )
        assert sold.status is DecisionStatus.EXECUTED

        result = await services.agents.calibration(user, created.id)

        # The buy's position closed: judged now. The sell waits for its horizon.
        assert (result.trades, result.realised, result.horizon) == (1, 1, 0)
        (outcome,) = result.outcomes
        assert (outcome.decision_id, outcome.outcome) == (bought.id, "realised")
        assert outcome.closed_quantity == D(quantity)
        async with services.database.database.read() as session:
            account = (
                await session.execute(
                    select(TradingAccount).where(TradingAccount.agent_id == created.id)
                )
            ).scalar_one()
        # One round trip: its PnL is the account's, net of both fees.
        net = account.realized_pnl - account.total_fees
        assert outcome.result == net.quantize(D("0.00000001"))
        assert outcome.won is (net > 0)
        assert result.wins == (1 if net > 0 else 0)

    async def test_each_order_of_a_rebalance_counts(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Rebalancer"))
        rebalance = Decision.model_validate(
            {
                "decision_type": "rebalance",
                "target_weights": [{"symbol": "BTC/USD", "weight": "0.05"}],
                "reasoning": "a little bitcoin",
                "confidence_score": "0.9",
            }
        )
        read = await services.agents.execute_decision(user, created.id, rebalance)
        assert read.status is DecisionStatus.EXECUTED
        # A day back: its horizon has passed.
        async with services.database.database.transaction() as session:
            row = await session.get(AgentDecision, read.id)
            assert row is not None
            row.created_at = row.created_at - timedelta(days=1)
            orders = (
                (await session.execute(select(Order).where(Order.decision_id == read.id)))
                .scalars()
                .all()
            )
            for order in orders:
                order.created_at = order.created_at - timedelta(days=1)
        assert len(orders) == 1

        result = await services.agents.calibration(user, created.id)

        assert (result.trades, result.horizon) == (1, 1)
        (outcome,) = result.outcomes
        assert (outcome.decision_id, outcome.order_id) == (read.id, orders[0].id)
        assert (outcome.side, outcome.confidence, outcome.closed_quantity) == (
            "buy",
            D("0.9"),
            None,
        )
