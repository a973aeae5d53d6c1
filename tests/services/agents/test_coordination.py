"""Coordination: combining several agents' views (the vote, the quorum, vetoes and
abstentions, pure), and real agents coordinated (focus, sizing, streaming)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import Settings
from main_consolidated import create_app
from models.agents import AgentCreate, CoordinateRequest
from models.decisions import Decision, TargetWeight
from models.enums import DecisionStatus, DecisionType, OrderSide, OrderType
from models.events import Event
from services.agents.coordination import VETO_CONFIDENCE, Combined, MemberView, combine
from services.container import Services
from tests.api.conftest import running_app
from tests.llm_server import Reply, ScriptedModel, serve

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


def buy(agent: str, confidence: str, share: str | None = "0.1") -> MemberView:
    return member(agent, trade(OrderSide.BUY, confidence), share)


def sell(agent: str, confidence: str, share: str | None = "0.1") -> MemberView:
    return member(agent, trade(OrderSide.SELL, confidence), share)


def hold(agent: str, confidence: str) -> MemberView:
    return member(agent, other(DecisionType.HOLD, confidence))


def risk(agent: str, confidence: str, *, symbol: str | None = None) -> MemberView:
    return member(agent, other(DecisionType.RISK_CHECK, confidence, symbol=symbol))


def member(agent: str, decision: Decision | None, share: str | None = None) -> MemberView:
    return MemberView(
        agent_id=agent,
        agent_name=agent.capitalize(),
        decision=decision,
        share=D(share) if share is not None else None,
    )


def failed(agent: str, error: str | None) -> MemberView:
    return MemberView(agent_id=agent, agent_name=agent.capitalize(), decision=None, error=error)


def scores(buy: str, sell: str, hold: str) -> dict[str, Decimal]:
    return {"buy": D(buy), "sell": D(sell), "hold": D(hold)}


class TestVote:
    def test_a_weighted_majority_buys_the_weighted_mean_share(self) -> None:
        # (0.8 x 0.1 + 0.4 x 0.4) / 1.2 = 0.2; buy has 1.2 of 1.5 = 80%; agreement 1.2 / 3.
        views = [buy("ann", "0.8", "0.1"), buy("bob", "0.4", "0.4"), hold("cy", "0.3")]
        result = combine(BTC, views)
        assert result == Combined(
            symbol=BTC,
            action="buy",
            confidence=D("0.4"),
            share=D("0.2"),
            scores=scores("1.2", "0", "0.3"),
            vetoed_by=(),
            abstained=(),
            reasoning=(
                "3 of 3 members voted on BTC/USD, by confidence: buy 1.2, sell 0, hold 0.3. "
                "buy has 80% of the score, more than the 50% quorum. "
                "Buy 20% of the executor's equity in BTC/USD, the confidence-weighted mean "
                "of 2 members' shares."
            ),
        )

    def test_a_weighted_majority_sells(self) -> None:
        result = combine(BTC, [sell("ann", "0.9", "0.5"), buy("bob", "0.3", "0.3")])
        assert (result.action, result.share, result.confidence) == ("sell", D("0.5"), D("0.45"))

    def test_a_unanimous_lukewarm_vote_has_its_members_confidence(self) -> None:
        # Every vote is a buy (100% of the score), but nobody is sure of it.
        result = combine(BTC, [buy("ann", "0.6"), buy("bob", "0.6")])
        assert (result.action, result.confidence) == ("buy", D("0.6"))

    def test_confidence_is_the_agreement_of_all_voters_not_the_winners_share(self) -> None:
        # buy has 0.9 of 1.2 (75%) but only one of two voters behind it: 0.9 / 2.
        result = combine(BTC, [buy("ann", "0.9"), sell("bob", "0.3")])
        assert (result.action, result.confidence) == ("buy", D("0.45"))

    def test_weights_count_confidence_not_heads(self) -> None:
        views = [buy("ann", "0.2"), buy("bob", "0.2"), sell("cy", "0.9")]
        result = combine(BTC, views)
        assert result.action == "sell"
        assert result.scores == scores("0.4", "0.9", "0")

    def test_weighted_share_is_exact(self) -> None:
        # (0.9 x 0.15 + 0.3 x 0.03) / 1.2 = 0.144 / 1.2 = 0.12
        result = combine(BTC, [buy("ann", "0.9", "0.15"), buy("bob", "0.3", "0.03")])
        assert result.share == D("0.12")

    def test_winning_members_without_a_share_are_left_out_of_the_mean(self) -> None:
        result = combine(BTC, [buy("ann", "0.6", "0.3"), buy("bob", "0.9", None)])
        assert (result.action, result.share, result.confidence) == ("buy", D("0.3"), D("0.75"))

    def test_a_zero_confidence_share_is_left_out_of_the_mean(self) -> None:
        result = combine(BTC, [buy("ann", "0.5", "0.2"), buy("bob", "0", "1")])
        assert result.share == D("0.2")

    def test_a_winning_side_without_any_share_holds(self) -> None:
        result = combine(BTC, [buy("ann", "0.8", None), hold("bob", "0.1")])
        assert (result.action, result.share) == ("hold", None)
        assert result.confidence == D("0.05")
        assert result.reasoning.endswith(
            "buy has 88.89% of the score, more than the 50% quorum. "
            "No member voting buy gave a size: hold."
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
        views = [buy("ann", "0.6"), member("bob", trade(OrderSide.BUY, "0.7", symbol=ETH), "0.9")]
        result = combine(BTC, views)
        assert result.scores == scores("0.6", "0", "0.7")
        assert (result.action, result.confidence) == ("hold", D("0.35"))
        assert result.reasoning.endswith("Counted as hold, trading another symbol: Bob (ETH/USD).")

    def test_the_symbol_is_matched_in_upper_case(self) -> None:
        result = combine("btc/usd", [buy("ann", "0.6")])
        assert (result.symbol, result.action) == (BTC, "buy")


class TestQuorumAndTies:
    def test_exactly_the_quorum_is_not_enough(self) -> None:
        result = combine(BTC, [buy("ann", "0.5"), sell("bob", "0.3"), hold("cy", "0.2")])
        assert (result.action, result.confidence, result.share) == ("hold", D("0.0667"), None)
        assert "buy has 50% of the score, not more than the 50% quorum: hold." in (result.reasoning)

    def test_just_over_the_quorum_wins(self) -> None:
        result = combine(BTC, [buy("ann", "0.51"), sell("bob", "0.29"), hold("cy", "0.2")])
        assert (result.action, result.confidence) == ("buy", D("0.17"))

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
        assert (result.action, result.confidence) == ("hold", D("0.2"))
        assert "buy and hold tie at 0.4: hold." in result.reasoning

    def test_rejects_a_quorum_outside_0_1(self) -> None:
        with pytest.raises(ValueError, match="quorum"):
            combine(BTC, [], quorum=D("1.5"))


class TestVeto:
    def test_a_confident_risk_check_vetoes_a_winning_buy(self) -> None:
        # buy 1.7 of 2.4 wins, but Rita's risk check at 0.7 vetoes it: hold, 0.7 / 3 voters.
        views = [buy("ann", "0.9"), buy("bob", "0.8"), risk("rita", "0.7")]
        result = combine(BTC, views)
        assert (result.action, result.share, result.vetoed_by) == ("hold", None, ("rita",))
        assert result.confidence == D("0.2333")
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
            BTC, [buy("ann", "0.6", "0.2"), failed("dee", "timeout"), failed("eve", None)]
        )
        assert (result.action, result.confidence, result.share) == ("buy", D("0.6"), D("0.2"))
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
        assert (result.action, result.confidence, result.share) == ("hold", D(0), None)
        assert result.scores == scores("0", "0", "0")


class TestMemberView:
    def test_rejects_a_non_positive_share(self) -> None:
        with pytest.raises(ValueError, match="share must be positive"):
            buy("ann", "0.5", "0")


class TestCombined:
    def test_a_buy_becomes_a_market_order_for_that_share_of_the_executors_equity(self) -> None:
        views = [buy("ann", "0.8", "0.1"), buy("bob", "0.4", "0.4"), hold("cy", "0.3")]
        result = combine(BTC, views)
        decision = result.to_decision(holding=D(5))
        assert decision.decision_type is DecisionType.TRADE
        assert (decision.symbol, decision.side, decision.order_type) == (
            BTC,
            OrderSide.BUY,
            OrderType.MARKET,
        )
        assert (decision.quantity, decision.fraction_of_equity) == (None, D("0.2"))
        assert (decision.confidence_score, decision.reasoning) == (D("0.4"), result.reasoning)

    def test_a_sell_sells_that_share_of_the_executors_holding(self) -> None:
        result = combine(BTC, [sell("ann", "0.9", "0.5"), sell("bob", "0.9", "1")])
        decision = result.to_decision(holding=D("0.3"))
        assert (decision.side, decision.quantity, decision.fraction_of_equity) == (
            OrderSide.SELL,
            D("0.225"),
            None,
        )

    def test_a_share_above_1_sells_the_whole_holding(self) -> None:
        result = combine(BTC, [sell("ann", "0.9", "3")])
        assert result.to_decision(holding=D("0.3")).quantity == D("0.3")

    def test_a_sell_by_an_executor_holding_nothing_holds(self) -> None:
        result = combine(BTC, [sell("ann", "0.9", "0.5"), sell("bob", "0.9", "1")])
        decision = result.to_decision(holding=D(0))
        assert decision.decision_type is DecisionType.HOLD
        assert decision.reasoning.endswith("The executor holds no BTC/USD to sell: hold.")

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
            "confidence": "0.7500",
            "share": "0.5",
            "scores": {"buy": "0", "sell": "0.75", "hold": "0"},
            "vetoed_by": [],
            "abstained": ["dee"],
            "reasoning": result.reasoning,
        }

    def test_a_trade_needs_a_share(self) -> None:
        with pytest.raises(ValueError, match="share"):
            Combined(BTC, "buy", D(1), None, scores("1", "0", "0"), (), (), "buy")


KINDS = ("buy", "sell", "hold", "analysis", "risk_check", "other_symbol", "failed")
unit = st.decimals(min_value=0, max_value=1, places=2, allow_nan=False)
shares = st.one_of(st.none(), st.decimals(min_value=D("0.01"), max_value=2, places=2))


def view(index: int, kind: str, confidence: Decimal, share: Decimal | None) -> MemberView:
    agent = f"agent-{index}"
    if kind == "failed":
        return failed(agent, "error")
    if kind in ("buy", "sell"):
        decision = trade(OrderSide(kind), str(confidence))
    elif kind == "other_symbol":
        decision = trade(OrderSide.BUY, str(confidence), symbol=ETH)
    else:
        decision = other(DecisionType(kind), str(confidence))
    return MemberView(agent, agent, decision, share)


members = st.lists(st.tuples(st.sampled_from(KINDS), unit, shares), max_size=8).map(
    lambda rows: [view(i, *row) for i, row in enumerate(rows)]
)


@given(views=members, quorum=unit)
def test_combined_result_is_consistent(views: list[MemberView], quorum: Decimal) -> None:
    result = combine(BTC, views, quorum=quorum)
    assert D(0) <= result.confidence <= 1
    assert (result.action == "hold") == (result.share is None)
    voters = [v.decision for v in views if v.decision is not None]
    assert sum(result.scores.values()) == sum(d.confidence_score for d in voters)
    assert result.abstained == tuple(v.agent_id for v in views if v.decision is None)
    if result.action != "hold":
        assert result.vetoed_by == ()
        assert result.scores[result.action] > quorum * sum(result.scores.values())
        sized = [
            v.share
            for v in views
            if v.decision is not None
            and v.decision.decision_type is DecisionType.TRADE
            and v.decision.symbol == BTC
            and v.decision.side == result.action
            and v.share is not None
            and v.decision.confidence_score > 0
        ]
        assert result.share is not None
        assert min(sized) <= result.share <= max(sized)
    # The confidence is the mean, over the voters, of the confidence behind the action.
    voted = [v for v in views if v.decision is not None]
    agreement = result.scores[result.action] / len(voted) if voted else D(0)
    assert result.confidence == agreement.quantize(D("0.0001"))
    json.dumps(result.to_record())
    result.to_decision(holding=D(1))


# -- coordinating real agents: the services on each database, models scripted ---------

MODEL = "test-model"


def scripted(name: str, **fields: Any) -> AgentCreate:
    return AgentCreate.model_validate(
        {
            "name": name,
            "symbols": ["BTC/USD"],
            "risk_tolerance": "0.5",
            "llm_provider": "openai_compatible",
            "llm_model": MODEL,
            **fields,
        }
    )


def buy_answer(confidence: str, fraction: str = "0.05") -> dict[str, Any]:
    return {
        "decision_type": "trade",
        "symbol": BTC,
        "side": "buy",
        "order_type": None,
        "fraction_of_equity": fraction,
        "reasoning": "buy because the test says so",
        "confidence_score": confidence,
    }


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str, model: ScriptedModel
) -> AsyncIterator[Services]:
    async with serve(model) as url:
        settings = make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
            llm={
                "openai_compatible_base_url": url,
                "llm_prices": {MODEL: {"input": "1", "output": "2"}},
            },
            agents={"scheduler_enabled": False},
        )
        app = create_app(settings)
        async with running_app(app):
            yield app.state.services


def prompt_payload(model: ScriptedModel, name: str) -> dict[str, Any]:
    """The context JSON of the request the model got for agent `name`."""
    request = next(r for r in model.requests if f"You are {name}," in json.dumps(r))
    user = next(m for m in request["messages"] if m["role"] == "user")["content"]
    payload: dict[str, Any] = json.loads(user.split("\n")[1])
    return payload


def run_events(events: list[Event], agent_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        e.envelope()["data"]
        for e in events
        if e.channel == f"agent:{agent_id}" and e.type == "agent_run"
    ]


class TestCoordinate:
    async def test_members_are_asked_about_the_coordinated_symbol_only(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        wide = await services.agents.create_agent(
            user, scripted("Wide", symbols=["BTC/USD", "ETH/USD"])
        )
        narrow = await services.agents.create_agent(user, scripted("Narrow"))
        model.script("Wide", Reply(buy_answer("0.8")))
        model.script("Narrow", Reply(buy_answer("0.8")))

        result = await services.agents.coordinate(
            user, CoordinateRequest(agent_ids=[wide.id, narrow.id], symbol=BTC)
        )

        asked = prompt_payload(model, "Wide")
        assert [s["symbol"] for s in asked["symbols"]] == [BTC]
        assert {t["symbol"] for t in asked.get("terms", [])} <= {BTC}
        logged = next(m for m in result.members if m.agent_id == wide.id)
        assert [s["symbol"] for s in logged.market_data["context"]["symbols"]] == [BTC]
        assert logged.result["coordination"]["symbol"] == BTC
        assert logged.result["coordination"]["share"] is not None

    async def test_the_executor_trades_a_size_of_its_own_account(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        rich = await services.agents.create_agent(user, scripted("Rich", paper_balance="100000"))
        small = await services.agents.create_agent(user, scripted("Small", paper_balance="1000"))
        model.script("Rich", Reply(buy_answer("0.9")))
        model.script("Small", Reply(buy_answer("0.7")))

        result = await services.agents.coordinate(
            user,
            CoordinateRequest(
                agent_ids=[rich.id, small.id], symbol=BTC, execute=True, executor_id=small.id
            ),
        )

        # Both spend 5% of their own equity: so does the executor, on its 1000.
        assert result.action == "buy"
        assert result.share is not None
        assert D("0.049") < result.share <= D("0.05")
        assert result.executed is not None
        assert result.executed.status is DecisionStatus.EXECUTED
        assert result.executed.quantity == result.quantity
        assert result.quantity is not None
        ask = services.market_data.ticker(BTC).ask
        assert D(45) <= result.quantity * ask <= D(50)

    async def test_the_combined_confidence_is_the_agreement_not_the_vote_share(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        first = await services.agents.create_agent(user, scripted("Unsure"))
        second = await services.agents.create_agent(user, scripted("Unsure2"))
        model.script("Unsure", Reply(buy_answer("0.6")))
        model.script("Unsure2", Reply(buy_answer("0.6")))

        result = await services.agents.coordinate(
            user, CoordinateRequest(agent_ids=[first.id, second.id], symbol=BTC)
        )

        assert (result.action, result.confidence) == ("buy", D("0.6"))

    async def test_each_members_run_streams_inside_the_coordination(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        ann = await services.agents.create_agent(user, scripted("Ann"))
        bob = await services.agents.create_agent(user, scripted("Bob"))
        model.script("Ann", Reply(buy_answer("0.8")))
        model.script("Bob", Reply(buy_answer("0.7")))
        events: list[Event] = []
        services.event_bus.subscribe(events.append)

        result = await services.agents.coordinate(
            user, CoordinateRequest(agent_ids=[ann.id, bob.id], symbol=BTC)
        )

        coordination = run_events(events, ann.id)
        assert coordination[0]["type"] == "RUN_STARTED"
        assert coordination[0]["runId"] == str(result.coordination_id)
        assert coordination[-1]["type"] == "RUN_FINISHED"
        assert [e["type"] for e in coordination].count("RUN_STARTED") == 1
        steps = [e["stepName"] for e in coordination if e["type"] == "STEP_STARTED"]
        for name in ("Ann", "Bob"):
            assert [s for s in steps if s.startswith(f"{name}: ")] == [
                f"{name}: context",
                f"{name}: model",
                f"{name}: risk_check",
            ]
        assert steps[-1] == "combine"
        member = run_events(events, bob.id)
        assert member[0]["type"] == "RUN_STARTED"
        assert member[0]["parentRunId"] == str(result.coordination_id)
        props = member[0]["input"]["forwardedProps"]
        assert props["coordination_id"] == str(result.coordination_id)
        assert member[-1]["type"] == "RUN_FINISHED"
        assert [e["stepName"] for e in member if e["type"] == "STEP_STARTED"] == [
            "context",
            "model",
            "risk_check",
        ]
