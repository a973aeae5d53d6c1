"""Calibration of an agent's confidence on hand-computed trade outcomes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.agents.calibration import CalibrationBucket, Outcome, calibrate

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
        assert result.summary == "No closed trades yet: nothing to calibrate"

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
