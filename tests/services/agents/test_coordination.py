"""Combining several agents' views: the vote, the quorum, vetoes and abstentions."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.decisions import Decision, TargetWeight
from models.enums import DecisionType, OrderSide, OrderType
from services.agents.coordination import VETO_CONFIDENCE, Combined, MemberView, combine

D = Decimal
BTC = "BTC/USD"
ETH = "ETH/USD"


def trade(side: OrderSide, confidence: str, *, symbol: str = BTC) -> Decision:
    return Decision(
        decision_type=DecisionType.TRADE,
        symbol=symbol,
        side=side,
        fraction_of_equity=D("0.1"),
        reasoning=f"{side} {symbol}",
        confidence_score=D(confidence),
    )


def other(kind: DecisionType, confidence: str, *, symbol: str | None = BTC) -> Decision:
    return Decision(
        decision_type=kind, symbol=symbol, reasoning=f"{kind}", confidence_score=D(confidence)
    )


def buy(agent: str, confidence: str, quantity: str | None = "1") -> MemberView:
    return member(agent, trade(OrderSide.BUY, confidence), quantity)


def sell(agent: str, confidence: str, quantity: str | None = "1") -> MemberView:
    return member(agent, trade(OrderSide.SELL, confidence), quantity)


def hold(agent: str, confidence: str) -> MemberView:
    return member(agent, other(DecisionType.HOLD, confidence))


def risk(agent: str, confidence: str, *, symbol: str | None = None) -> MemberView:
    return member(agent, other(DecisionType.RISK_CHECK, confidence, symbol=symbol))


def member(agent: str, decision: Decision | None, quantity: str | None = None) -> MemberView:
    return MemberView(
        agent_id=agent,
        agent_name=agent.capitalize(),
        decision=decision,
        quantity=D(quantity) if quantity is not None else None,
    )


def failed(agent: str, error: str | None) -> MemberView:
    return MemberView(agent_id=agent, agent_name=agent.capitalize(), decision=None, error=error)


def scores(buy: str, sell: str, hold: str) -> dict[str, Decimal]:
    return {"buy": D(buy), "sell": D(sell), "hold": D(hold)}


class TestVote:
    def test_a_weighted_majority_buys_the_weighted_mean_quantity(self) -> None:
        # (0.8 x 1 + 0.4 x 4) / 1.2 = 2; buy has 1.2 of 1.5 = 80%.
        result = combine(BTC, [buy("ann", "0.8", "1"), buy("bob", "0.4", "4"), hold("cy", "0.3")])
        assert result == Combined(
            symbol=BTC,
            action="buy",
            confidence=D("0.8"),
            quantity=D(2),
            scores=scores("1.2", "0", "0.3"),
            vetoed_by=(),
            abstained=(),
            reasoning=(
                "3 of 3 members voted on BTC/USD, by confidence: buy 1.2, sell 0, hold 0.3. "
                "buy has 80% of the score, more than the 50% quorum. "
                "Buy 2 BTC/USD, the confidence-weighted mean of 2 members' quantities."
            ),
        )

    def test_a_weighted_majority_sells(self) -> None:
        result = combine(BTC, [sell("ann", "0.9", "0.5"), buy("bob", "0.3", "3")])
        assert (result.action, result.quantity, result.confidence) == ("sell", D("0.5"), D("0.75"))

    def test_weights_count_confidence_not_heads(self) -> None:
        views = [buy("ann", "0.2"), buy("bob", "0.2"), sell("cy", "0.9")]
        result = combine(BTC, views)
        assert result.action == "sell"
        assert result.scores == scores("0.4", "0.9", "0")

    def test_weighted_quantity_is_exact(self) -> None:
        # (0.9 x 1.5 + 0.3 x 0.3) / 1.2 = 1.44 / 1.2 = 1.2
        result = combine(BTC, [buy("ann", "0.9", "1.5"), buy("bob", "0.3", "0.3")])
        assert result.quantity == D("1.2")

    def test_winning_members_without_a_quantity_are_left_out_of_the_mean(self) -> None:
        result = combine(BTC, [buy("ann", "0.6", "3"), buy("bob", "0.9", None)])
        assert (result.action, result.quantity, result.confidence) == ("buy", D(3), D(1))

    def test_a_zero_confidence_quantity_is_left_out_of_the_mean(self) -> None:
        result = combine(BTC, [buy("ann", "0.5", "2"), buy("bob", "0", "100")])
        assert result.quantity == D(2)

    def test_a_winning_side_without_any_quantity_holds(self) -> None:
        result = combine(BTC, [buy("ann", "0.8", None), hold("bob", "0.1")])
        assert (result.action, result.quantity) == ("hold", None)
        assert result.confidence == D("0.1111")
        assert result.reasoning.endswith(
            "buy has 88.89% of the score, more than the 50% quorum. "
            "No member voting buy gave a quantity: hold."
        )

    def test_analysis_and_rebalance_count_as_hold(self) -> None:
        rebalance = Decision(
            decision_type=DecisionType.REBALANCE,
            target_weights=[TargetWeight(symbol=BTC, weight=D("0.5"))],
            reasoning="rebalance",
            confidence_score=D("0.4"),
        )
        views = [
            buy("ann", "0.5"),
            member("bob", other(DecisionType.ANALYSIS, "0.3")),
            member("cy", rebalance),
        ]
        result = combine(BTC, views)
        assert result.scores == scores("0.5", "0", "0.7")
        assert result.action == "hold"

    def test_a_trade_on_another_symbol_counts_as_hold(self) -> None:
        views = [buy("ann", "0.6"), member("bob", trade(OrderSide.BUY, "0.7", symbol=ETH), "9")]
        result = combine(BTC, views)
        assert result.scores == scores("0.6", "0", "0.7")
        assert (result.action, result.confidence) == ("hold", D("0.5385"))
        assert result.reasoning.endswith("Counted as hold, trading another symbol: Bob (ETH/USD).")

    def test_the_symbol_is_matched_in_upper_case(self) -> None:
        result = combine("btc/usd", [buy("ann", "0.6")])
        assert (result.symbol, result.action) == (BTC, "buy")


class TestQuorumAndTies:
    def test_exactly_the_quorum_is_not_enough(self) -> None:
        result = combine(BTC, [buy("ann", "0.5"), sell("bob", "0.3"), hold("cy", "0.2")])
        assert (result.action, result.confidence, result.quantity) == ("hold", D("0.2"), None)
        assert "buy has 50% of the score, not more than the 50% quorum: hold." in (result.reasoning)

    def test_just_over_the_quorum_wins(self) -> None:
        result = combine(BTC, [buy("ann", "0.51"), sell("bob", "0.29"), hold("cy", "0.2")])
        assert (result.action, result.confidence) == ("buy", D("0.51"))

    def test_a_stricter_quorum_holds(self) -> None:
        views = [buy("ann", "0.6"), sell("bob", "0.4")]
        assert combine(BTC, views).action == "buy"
        result = combine(BTC, views, quorum=D("0.6"))
        assert result.action == "hold"
        assert "buy has 60% of the score, not more than the 60% quorum: hold." in (result.reasoning)

    def test_buy_and_sell_tied_hold(self) -> None:
        result = combine(BTC, [buy("ann", "0.6"), sell("bob", "0.6")])
        assert (result.action, result.confidence) == ("hold", D(0))
        assert "buy and sell tie at 0.6: hold." in result.reasoning

    def test_a_trade_tied_with_hold_holds(self) -> None:
        result = combine(BTC, [buy("ann", "0.4"), hold("bob", "0.4")])
        assert (result.action, result.confidence) == ("hold", D("0.5"))
        assert "buy and hold tie at 0.4: hold." in result.reasoning

    def test_rejects_a_quorum_outside_0_1(self) -> None:
        with pytest.raises(ValueError, match="quorum"):
            combine(BTC, [], quorum=D("1.5"))


class TestVeto:
    def test_a_confident_risk_check_vetoes_a_winning_buy(self) -> None:
        # buy 1.7 of 2.4 wins, but Rita's risk check at 0.7 vetoes it: hold 0.7 / 2.4.
        views = [buy("ann", "0.9"), buy("bob", "0.8"), risk("rita", "0.7")]
        result = combine(BTC, views)
        assert (result.action, result.quantity, result.vetoed_by) == ("hold", None, ("rita",))
        assert result.confidence == D("0.2917")
        assert result.reasoning == (
            "3 of 3 members voted on BTC/USD, by confidence: buy 1.7, sell 0, hold 0.7. "
            "buy has 70.83% of the score, more than the 50% quorum. "
            "The buy is vetoed by a risk check at confidence 0.7 or more from Rita (0.7): hold."
        )

    def test_every_vetoer_is_named(self) -> None:
        views = [sell("ann", "1"), sell("bob", "1"), risk("rita", "0.9"), risk("sam", "0.8")]
        result = combine(BTC, views)
        assert result.vetoed_by == ("rita", "sam")
        assert "from Rita (0.9), Sam (0.8): hold." in result.reasoning

    def test_a_risk_check_below_the_veto_confidence_is_no_veto(self) -> None:
        result = combine(BTC, [buy("ann", "0.9"), buy("bob", "0.8"), risk("rita", "0.69")])
        assert (result.action, result.vetoed_by) == ("buy", ())

    def test_the_veto_confidence_can_be_set(self) -> None:
        views = [buy("ann", "0.9"), buy("bob", "0.8"), risk("rita", "0.5")]
        assert combine(BTC, views, veto_confidence=D("0.5")).vetoed_by == ("rita",)
        assert VETO_CONFIDENCE == D("0.7")

    def test_a_risk_check_on_the_symbol_vetoes(self) -> None:
        result = combine(
            BTC, [buy("ann", "0.9"), buy("bob", "0.8"), risk("rita", "0.8", symbol=BTC)]
        )
        assert result.vetoed_by == ("rita",)

    def test_a_risk_check_on_another_symbol_is_no_veto(self) -> None:
        result = combine(
            BTC, [buy("ann", "0.9"), buy("bob", "0.8"), risk("rita", "0.8", symbol=ETH)]
        )
        assert (result.action, result.vetoed_by) == ("buy", ())

    def test_no_veto_is_recorded_when_hold_wins_anyway(self) -> None:
        result = combine(BTC, [buy("ann", "0.3"), risk("rita", "0.9")])
        assert (result.action, result.vetoed_by) == ("hold", ())


class TestAbstentions:
    def test_a_failed_member_abstains_and_carries_no_weight(self) -> None:
        result = combine(
            BTC, [buy("ann", "0.6", "2"), failed("dee", "timeout"), failed("eve", None)]
        )
        assert (result.action, result.confidence, result.quantity) == ("buy", D(1), D(2))
        assert result.abstained == ("dee", "eve")
        assert result.scores == scores("0.6", "0", "0")
        assert result.reasoning.startswith("1 of 3 members voted on BTC/USD")
        assert result.reasoning.endswith("Abstained: Dee (timeout), Eve.")

    def test_all_abstaining_holds_with_zero_confidence(self) -> None:
        result = combine(BTC, [failed("dee", "timeout")])
        assert (result.action, result.confidence, result.abstained) == ("hold", D(0), ("dee",))
        assert result.reasoning == (
            "0 of 1 members voted on BTC/USD, by confidence: buy 0, sell 0, hold 0. "
            "No confidence behind any vote: hold. Abstained: Dee (timeout)."
        )

    def test_no_members_hold(self) -> None:
        result = combine(BTC, [])
        assert (result.action, result.confidence, result.quantity) == ("hold", D(0), None)
        assert result.scores == scores("0", "0", "0")


class TestMemberView:
    def test_rejects_a_non_positive_quantity(self) -> None:
        with pytest.raises(ValueError, match="quantity must be positive"):
            buy("ann", "0.5", "0")


class TestCombined:
    def test_a_trade_becomes_a_market_order(self) -> None:
        result = combine(BTC, [buy("ann", "0.8", "1"), buy("bob", "0.4", "4"), hold("cy", "0.3")])
        decision = result.to_decision()
        assert decision.decision_type is DecisionType.TRADE
        assert (decision.symbol, decision.side, decision.order_type) == (
            BTC,
            OrderSide.BUY,
            OrderType.MARKET,
        )
        assert (decision.quantity, decision.fraction_of_equity) == (D(2), None)
        assert (decision.confidence_score, decision.reasoning) == (D("0.8"), result.reasoning)

    def test_a_hold_becomes_a_hold_decision(self) -> None:
        result = combine(BTC, [buy("ann", "0.6"), sell("bob", "0.6")])
        decision = result.to_decision()
        assert (decision.decision_type, decision.symbol, decision.side) == (
            DecisionType.HOLD,
            BTC,
            None,
        )
        assert (decision.confidence_score, decision.reasoning) == (D(0), result.reasoning)

    def test_a_long_reasoning_is_clipped_to_fit_a_decision(self) -> None:
        views = [failed(f"agent-{i}", "x" * 50) for i in range(100)]
        result = combine(BTC, views)
        assert len(result.reasoning) > 4000
        assert len(result.to_decision().reasoning) == 4000

    def test_to_record_is_json_ready(self) -> None:
        result = combine(BTC, [sell("ann", "0.75", "0.5"), failed("dee", "timeout")])
        record = result.to_record()
        assert json.loads(json.dumps(record)) == record
        assert record == {
            "symbol": BTC,
            "action": "sell",
            "confidence": "1.0000",
            "quantity": "0.5",
            "scores": {"buy": "0", "sell": "0.75", "hold": "0"},
            "vetoed_by": [],
            "abstained": ["dee"],
            "reasoning": result.reasoning,
        }

    def test_a_trade_needs_a_quantity(self) -> None:
        with pytest.raises(ValueError, match="quantity"):
            Combined(BTC, "buy", D(1), None, scores("1", "0", "0"), (), (), "buy")


KINDS = ("buy", "sell", "hold", "analysis", "risk_check", "other_symbol", "failed")
unit = st.decimals(min_value=0, max_value=1, places=2, allow_nan=False)
quantities = st.one_of(st.none(), st.decimals(min_value=D("0.01"), max_value=100, places=2))


def view(index: int, kind: str, confidence: Decimal, quantity: Decimal | None) -> MemberView:
    agent = f"agent-{index}"
    if kind == "failed":
        return failed(agent, "error")
    if kind in ("buy", "sell"):
        decision = trade(OrderSide(kind), str(confidence))
    elif kind == "other_symbol":
        decision = trade(OrderSide.BUY, str(confidence), symbol=ETH)
    else:
        decision = other(DecisionType(kind), str(confidence))
    return MemberView(agent, agent, decision, quantity)


members = st.lists(st.tuples(st.sampled_from(KINDS), unit, quantities), max_size=8).map(
    lambda rows: [view(i, *row) for i, row in enumerate(rows)]
)


@given(views=members, quorum=unit)
def test_combined_result_is_consistent(views: list[MemberView], quorum: Decimal) -> None:
    result = combine(BTC, views, quorum=quorum)
    assert D(0) <= result.confidence <= 1
    assert (result.action == "hold") == (result.quantity is None)
    voters = [v.decision for v in views if v.decision is not None]
    assert sum(result.scores.values()) == sum(d.confidence_score for d in voters)
    assert result.abstained == tuple(v.agent_id for v in views if v.decision is None)
    if result.action != "hold":
        assert result.vetoed_by == ()
        assert result.scores[result.action] > quorum * sum(result.scores.values())
        sized = [
            v.quantity
            for v in views
            if v.decision is not None
            and v.decision.decision_type is DecisionType.TRADE
            and v.decision.symbol == BTC
            and v.decision.side == result.action
            and v.quantity is not None
            and v.decision.confidence_score > 0
        ]
        assert result.quantity is not None
        assert min(sized) <= result.quantity <= max(sized)
    json.dumps(result.to_record())
    result.to_decision()
