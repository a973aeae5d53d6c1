"""The built-in rule-based provider: crafted candles in, the expected decision out."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

import pytest

from models.decisions import PositionData, RiskBudget
from models.enums import DecisionType, OrderSide, OrderType
from services.llm.providers.local import (
    LocalProvider,
    Strategy,
    decide_by_rules,
    resolve_strategies,
)
from tests.services.llm.support import make_context, symbol_context
from utils.indicators import indicator_snapshot


def golden_cross_closes() -> list[Decimal]:
    """A downtrend, then a rally that lifts SMA10 over SMA30 on the very last candle."""
    closes = [Decimal(120 - i) for i in range(40)]
    for _ in range(60):
        closes.append(closes[-1] + 3)
        snapshot = indicator_snapshot(closes)
        if snapshot.sma_cross is OrderSide.BUY and snapshot.sma_cross_age == 0:
            return closes
    raise AssertionError("the rally never crossed")


def death_cross_closes() -> list[Decimal]:
    closes = [Decimal(80 + i) for i in range(40)]
    for _ in range(60):
        closes.append(closes[-1] - 3)
        snapshot = indicator_snapshot(closes)
        if snapshot.sma_cross is OrderSide.SELL and snapshot.sma_cross_age == 0:
            return closes
    raise AssertionError("the sell-off never crossed")


def zigzag(start: float, steps: int, down: float, up: float) -> list[Decimal]:
    """Alternating moves: down then up, so RSI settles at 100 * up / (up + down)."""
    closes = [Decimal(str(start))]
    for i in range(steps):
        move = -down if i % 2 == 0 else up
        closes.append(closes[-1] + Decimal(str(move)))
    return closes


OVERSOLD = zigzag(200, 40, down=2.0, up=0.5)
OVERBOUGHT = [Decimal(str(100 + 2 * i - (0.5 if i % 2 else 0))) for i in range(40)]
BAND_BREAK_DOWN = [Decimal(100 + 2 * (i % 2)) for i in range(29)] + [Decimal(92)]
STEADY_RALLY = [Decimal(100) * Decimal("1.01") ** i for i in range(40)]
FLAT = [Decimal(100)] * 40
BTC_POSITION = PositionData(symbol="BTC-USD", quantity=Decimal("0.8"), average_price=Decimal(90))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the local provider opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class TestStrategies:
    def test_fresh_golden_cross_buys(self) -> None:
        decision, _ = decide_by_rules(make_context(golden_cross_closes()))

        assert decision.decision_type is DecisionType.TRADE
        assert decision.side is OrderSide.BUY
        assert decision.fraction_of_equity is not None
        assert "crossed above" in decision.reasoning
        assert "SMA10" in decision.reasoning
        assert "SMA30" in decision.reasoning

    def test_death_cross_sells_the_whole_position(self) -> None:
        context = make_context(death_cross_closes(), positions=[BTC_POSITION])

        decision, _ = decide_by_rules(context)

        assert decision.side is OrderSide.SELL
        # Strength 0.8 reaches twice the 0.40 threshold: a strong signal sells it all.
        assert decision.quantity == Decimal("0.8")
        assert "crossed below" in decision.reasoning
        assert "Sell the whole position" in decision.reasoning

    def test_weaker_sell_signal_sells_half(self) -> None:
        # Aggression 0.3 puts the bar at 0.48, so 0.8 is under twice the bar.
        context = make_context(death_cross_closes(), positions=[BTC_POSITION], aggression=0.3)

        decision, _ = decide_by_rules(context)

        assert decision.quantity == Decimal("0.4")
        assert decision.order_type is OrderType.MARKET

    def test_rsi_below_30_buys(self) -> None:
        context = make_context(OVERSOLD, strategies=["RSI Mean Reversion"])

        decision, _ = decide_by_rules(context)

        assert decision.side is OrderSide.BUY
        assert "RSI14 21.0 below 30 (oversold)" in decision.reasoning

    def test_rsi_above_70_sells_whole_position(self) -> None:
        context = make_context(
            OVERBOUGHT, strategies=["rsi_mean_reversion"], positions=[BTC_POSITION]
        )

        decision, _ = decide_by_rules(context)

        assert decision.side is OrderSide.SELL
        assert decision.quantity == Decimal("0.8")
        assert "overbought" in decision.reasoning

    def test_sell_signal_without_position_holds(self) -> None:
        context = make_context(OVERBOUGHT, strategies=["RSI Mean Reversion"])

        decision, _ = decide_by_rules(context)

        assert decision.decision_type is DecisionType.HOLD
        assert "no BTC-USD position to sell" in decision.reasoning

    def test_close_below_lower_bollinger_band_buys(self) -> None:
        context = make_context(BAND_BREAK_DOWN, strategies=["Bollinger Bands"])

        decision, _ = decide_by_rules(context)

        assert decision.side is OrderSide.BUY
        assert "close 92.00 below lower bands" in decision.reasoning

    def test_steady_rally_is_momentum_to_buy(self) -> None:
        context = make_context(STEADY_RALLY, strategies=["Momentum Scanner"])

        decision, _ = decide_by_rules(context)

        assert decision.side is OrderSide.BUY
        assert "10-candle return +10.46%" in decision.reasoning
        assert "upward momentum" in decision.reasoning

    def test_flat_market_holds_and_cites_every_strategy(self) -> None:
        context = make_context(FLAT, strategies=[s.value for s in Strategy])

        decision, _ = decide_by_rules(context)

        assert decision.decision_type is DecisionType.HOLD
        assert decision.side is None
        assert "no signal strong enough" in decision.reasoning
        assert "RSI14 50.0, neutral" in decision.reasoning
        assert "inside bands" in decision.reasoning
        assert "no momentum signal" in decision.reasoning

    def test_too_few_candles_says_so(self) -> None:
        decision, _ = decide_by_rules(make_context([100, 101, 102]))

        assert decision.decision_type is DecisionType.HOLD
        assert "not enough data (3 closes, need 30)" in decision.reasoning

    def test_strongest_symbol_wins(self) -> None:
        context = make_context(
            symbols=[symbol_context("ETH-USD", FLAT), symbol_context("SOL-USD", OVERSOLD)],
            strategies=["RSI Mean Reversion"],
        )

        decision, _ = decide_by_rules(context)

        assert decision.symbol == "SOL-USD"
        assert decision.side is OrderSide.BUY


class TestStrategyNames:
    def test_names_are_matched_loosely(self) -> None:
        found, unknown = resolve_strategies(
            ["MA crossover", "RSI", "bollinger_bands", "MACD momentum", "Astrology"]
        )

        assert found == [
            Strategy.MA_CROSSOVER,
            Strategy.RSI_MEAN_REVERSION,
            Strategy.BOLLINGER_BANDS,
            Strategy.MOMENTUM,
        ]
        assert unknown == ["Astrology"]

    def test_unknown_names_fall_back_to_all_strategies(self) -> None:
        decision, request = decide_by_rules(make_context(OVERSOLD, strategies=["Astrology"]))

        assert "Ignored unrecognised strategies: Astrology" in decision.reasoning
        assert request["strategies"] == [s.value for s in Strategy]


class TestSizing:
    def test_medium_risk_buy_is_sized_by_confidence(self) -> None:
        decision, _ = decide_by_rules(make_context(golden_cross_closes()))

        # Fresh cross: strength 0.8, confidence 0.82; base 5% x (0.5 + 0.5) x 0.82.
        assert decision.confidence_score == Decimal("0.82")
        assert decision.fraction_of_equity == Decimal("0.041")
        assert decision.order_type is OrderType.MARKET

    def test_max_position_caps_the_buy(self) -> None:
        decision, _ = decide_by_rules(make_context(golden_cross_closes(), max_position_pct="2"))

        assert decision.fraction_of_equity == Decimal("0.02")
        assert "max position binds" in decision.reasoning

    def test_cash_caps_the_buy(self) -> None:
        decision, _ = decide_by_rules(make_context(golden_cross_closes(), cash="150"))

        assert decision.fraction_of_equity == Decimal("0.015")
        assert "cash binds" in decision.reasoning

    def test_full_position_leaves_no_room(self) -> None:
        full = PositionData(
            symbol="BTC-USD",
            quantity=Decimal(10),
            average_price=Decimal(100),
            market_value=Decimal(1000),
        )

        decision, _ = decide_by_rules(make_context(golden_cross_closes(), positions=[full]))

        assert decision.decision_type is DecisionType.HOLD
        assert "no room left under the max position limit" in decision.reasoning

    def test_used_up_daily_loss_is_a_risk_check(self) -> None:
        risk = RiskBudget(max_daily_loss=Decimal(500), daily_loss_remaining=Decimal(0))

        decision, _ = decide_by_rules(make_context(golden_cross_closes(), risk=risk))

        assert decision.decision_type is DecisionType.RISK_CHECK
        assert "daily loss limit is used up" in decision.reasoning

    def test_timid_personality_places_a_limit_below_the_price(self) -> None:
        closes = golden_cross_closes()

        decision, _ = decide_by_rules(make_context(closes, aggression="0.1"))

        assert decision.order_type is OrderType.LIMIT
        assert decision.limit_price == (closes[-1] * Decimal("0.999")).quantize(
            Decimal("0.01"), rounding="ROUND_FLOOR"
        )
        assert decision.limit_price < closes[-1]

    def test_aggression_lowers_the_bar(self) -> None:
        # Just under the lower band: strength 0.54, over an aggressive agent's bar (0.20)
        # and under a timid one's (0.60).
        closes = [Decimal(100 + 2 * (i % 2)) for i in range(29)] + [Decimal("98.4")]
        timid, _ = decide_by_rules(make_context(closes, strategies=["Bollinger"], aggression=0.0))
        bold, _ = decide_by_rules(make_context(closes, strategies=["Bollinger"], aggression=1.0))

        assert timid.decision_type is DecisionType.HOLD
        assert bold.side is OrderSide.BUY


class TestLocalProvider:
    async def test_same_context_same_decision_without_network(self, no_network: None) -> None:
        provider = LocalProvider()
        context = make_context(OVERSOLD, strategies=[s.value for s in Strategy])

        first = await provider.decide(context, model="rule-based")
        second = await provider.decide(context, model="rule-based")

        assert first.unwrap() == second.unwrap()
        assert first.raw_answers == second.raw_answers
        assert first.cost == Decimal(0)
        assert (first.prompt_tokens, first.completion_tokens) == (0, 0)
        assert first.provider == "local"
        assert first.attempts == 1
        assert first.request["strategies"] == [s.value for s in Strategy]
