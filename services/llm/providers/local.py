"""The built-in rule-based decision maker: the default when no model key is configured.

It reads the same `AgentContext` an LLM gets and returns the same `Decision`, with a
reasoning that cites the numbers. No network, no cost, and the same context always
gives the same decision.

How it decides:
- Each of the agent's strategies (matched by name: moving average crossover, RSI mean
  reversion, Bollinger bands, momentum) gives each symbol a buy or sell signal with a
  strength in 0..1, or none. Unrecognised names are ignored (and said so); an agent
  with no recognised strategy gets all four.
- A symbol's score is the buy strengths minus the sell strengths; the symbol with the
  largest |score| wins (ties: the context's order). It acts when |score| reaches
  0.6 - 0.4 * aggression, so an aggressive personality acts on weaker signals.
- A buy is sized as a fraction of equity: base by risk tolerance (2% / 5% / 10%)
  x (0.5 + aggression) x confidence, capped by the max position, the risk limits and
  the cash. A sell sells the position (all of it on a strong signal, half otherwise);
  spot only, so no position means hold. A timid personality (aggression < 0.3) uses
  limit orders 0.1% through the price; others use market orders.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from models.base import decimal_to_str
from models.decisions import AgentContext, Decision, IndicatorSnapshot, RiskTolerance, SymbolContext
from models.enums import DecisionType, OrderSide, OrderType
from services.llm.base import Clock, LLMProvider, ProviderResult
from utils.indicators import indicator_snapshot

LOCAL_MODEL = "rule-based"
BASE_FRACTION = {
    RiskTolerance.LOW: Decimal("0.02"),
    RiskTolerance.MEDIUM: Decimal("0.05"),
    RiskTolerance.HIGH: Decimal("0.10"),
}
RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 70.0
MOMENTUM_MIN_RETURN = 0.02
LIMIT_OFFSET = Decimal("0.001")
TIMID_AGGRESSION = 0.3
_FRACTION_STEP = Decimal("0.0001")
_CONFIDENCE_STEP = Decimal("0.01")
_MAX_REASONING = 4000


class Strategy(StrEnum):
    MA_CROSSOVER = "Moving Average Crossover"
    RSI_MEAN_REVERSION = "RSI Mean Reversion"
    BOLLINGER_BANDS = "Bollinger Bands"
    MOMENTUM = "Momentum Scanner"


def resolve_strategies(names: Sequence[str]) -> tuple[list[Strategy], list[str]]:
    """The strategies the names refer to (in order, once each) and the names not understood."""
    found: list[Strategy] = []
    unknown: list[str] = []
    for name in names:
        strategy = _match(name)
        if strategy is None:
            unknown.append(name)
        elif strategy not in found:
            found.append(strategy)
    return found, unknown


def _match(name: str) -> Strategy | None:
    words = re.sub(r"[^a-z0-9]+", " ", name.lower()).split()
    text = " ".join(words)
    if "bollinger" in words:
        return Strategy.BOLLINGER_BANDS
    if "rsi" in words or "mean reversion" in text:
        return Strategy.RSI_MEAN_REVERSION
    if "moving average" in text or "crossover" in words or {"sma", "ema", "ma"} & set(words):
        return Strategy.MA_CROSSOVER
    if "momentum" in words or "macd" in words:
        return Strategy.MOMENTUM
    return None


@dataclass(frozen=True, slots=True)
class Signal:
    strategy: Strategy
    side: OrderSide | None
    strength: float
    note: str


def _num(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.6g}"


def _too_little(strategy: Strategy, need: int, have: int) -> Signal:
    return Signal(strategy, None, 0.0, f"{strategy}: not enough data ({have} closes, need {need})")


def ma_crossover(ind: IndicatorSnapshot) -> Signal:
    s = Strategy.MA_CROSSOVER
    p = ind.params
    if ind.sma_fast is None or ind.sma_slow is None:
        return _too_little(s, p.sma_slow, ind.sample_size)
    fast = f"SMA{p.sma_fast} {_num(ind.sma_fast)}"
    slow = f"SMA{p.sma_slow} {_num(ind.sma_slow)}"
    age = ind.sma_cross_age
    if ind.sma_cross is not None and age is not None and age <= p.crossover_max_age:
        where = "above" if ind.sma_cross is OrderSide.BUY else "below"
        strength = max(0.5, 0.8 - 0.1 * age)
        return Signal(
            s, ind.sma_cross, strength, f"{fast} crossed {where} {slow} {age} candle(s) ago"
        )
    where = "above" if ind.sma_fast > ind.sma_slow else "below or at"
    return Signal(s, None, 0.0, f"{fast} {where} {slow}, no fresh crossover")


def rsi_mean_reversion(ind: IndicatorSnapshot) -> Signal:
    s = Strategy.RSI_MEAN_REVERSION
    p = ind.params
    if ind.rsi is None:
        return _too_little(s, p.rsi_period + 1, ind.sample_size)
    label = f"RSI{p.rsi_period} {ind.rsi:.1f}"
    if ind.rsi < RSI_OVERSOLD:
        strength = min(1.0, 0.5 + (RSI_OVERSOLD - ind.rsi) / 20)
        return Signal(s, OrderSide.BUY, strength, f"{label} below {RSI_OVERSOLD:.0f} (oversold)")
    if ind.rsi > RSI_OVERBOUGHT:
        strength = min(1.0, 0.5 + (ind.rsi - RSI_OVERBOUGHT) / 20)
        return Signal(
            s, OrderSide.SELL, strength, f"{label} above {RSI_OVERBOUGHT:.0f} (overbought)"
        )
    return Signal(s, None, 0.0, f"{label}, neutral ({RSI_OVERSOLD:.0f}-{RSI_OVERBOUGHT:.0f})")


def bollinger_bands(ind: IndicatorSnapshot) -> Signal:
    s = Strategy.BOLLINGER_BANDS
    p = ind.params
    upper, lower, close = ind.bollinger_upper, ind.bollinger_lower, ind.last_close
    if upper is None or lower is None or close is None:
        return _too_little(s, p.bollinger_period, ind.sample_size)
    bands = f"bands {_num(lower)}-{_num(upper)} ({p.bollinger_period}, {p.bollinger_k:g}sd)"
    width = upper - lower
    if width > 0 and close < lower:
        strength = min(1.0, 0.5 + (lower - close) / width)
        return Signal(s, OrderSide.BUY, strength, f"close {_num(close)} below lower {bands}")
    if width > 0 and close > upper:
        strength = min(1.0, 0.5 + (close - upper) / width)
        return Signal(s, OrderSide.SELL, strength, f"close {_num(close)} above upper {bands}")
    return Signal(s, None, 0.0, f"close {_num(close)} inside {bands}")


def momentum_scanner(ind: IndicatorSnapshot) -> Signal:
    s = Strategy.MOMENTUM
    p = ind.params
    ret, hist = ind.momentum_return, ind.macd_histogram
    if ret is None:
        return _too_little(s, p.momentum_lookback + 1, ind.sample_size)
    label = f"{p.momentum_lookback}-candle return {ret:+.2%}"
    if hist is not None:
        label += f", MACD histogram {hist:+.4g}"
    if ret >= MOMENTUM_MIN_RETURN and (hist is None or hist > 0):
        return Signal(s, OrderSide.BUY, min(1.0, 0.5 + ret / 0.1), f"{label}: upward momentum")
    if ret <= -MOMENTUM_MIN_RETURN and (hist is None or hist < 0):
        return Signal(s, OrderSide.SELL, min(1.0, 0.5 - ret / 0.1), f"{label}: downward momentum")
    return Signal(s, None, 0.0, f"{label}: no momentum signal")


_EVALUATORS = {
    Strategy.MA_CROSSOVER: ma_crossover,
    Strategy.RSI_MEAN_REVERSION: rsi_mean_reversion,
    Strategy.BOLLINGER_BANDS: bollinger_bands,
    Strategy.MOMENTUM: momentum_scanner,
}


@dataclass(frozen=True, slots=True)
class _Assessment:
    symbol: SymbolContext
    price: Decimal
    signals: list[Signal]
    score: float

    @property
    def side(self) -> OrderSide:
        return OrderSide.BUY if self.score > 0 else OrderSide.SELL

    def notes(self) -> str:
        return "; ".join(s.note for s in self.signals)


def _assess(symbol: SymbolContext, strategies: Sequence[Strategy]) -> _Assessment | None:
    price = symbol.price
    if price is None or price <= 0:
        return None
    indicators = symbol.indicators or indicator_snapshot([c.close for c in symbol.candles])
    signals = [_EVALUATORS[s](indicators) for s in strategies]
    score = 0.0
    for signal in signals:
        if signal.side is OrderSide.BUY:
            score += signal.strength
        elif signal.side is OrderSide.SELL:
            score -= signal.strength
    return _Assessment(symbol, price, signals, round(score, 6))


class LocalProvider(LLMProvider):
    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.name = "local"
        self._clock = clock

    async def decide(self, context: AgentContext, *, model: str = LOCAL_MODEL) -> ProviderResult:
        started = self._clock()
        decision, request = decide_by_rules(context)
        return ProviderResult(
            provider=self.name,
            model=model,
            decision=decision,
            request=request,
            raw_answers=(decision.model_dump_json(),),
            prompt_tokens=0,
            completion_tokens=0,
            cost=Decimal(0),
            latency_ms=max(0, round((self._clock() - started) * 1000)),
            attempts=1,
        )


def decide_by_rules(context: AgentContext) -> tuple[Decision, dict[str, Any]]:
    """The decision for `context` and a record of the rules applied."""
    strategies, unknown = resolve_strategies(context.strategies)
    preface = ""
    if unknown:
        preface = f"Ignored unrecognised strategies: {', '.join(unknown)}. "
    if not strategies:
        strategies = list(Strategy)
        preface += "No recognised strategy named; using all built-in ones. "
    aggression = context.aggression
    threshold = round(0.6 - 0.4 * aggression, 2)
    request: dict[str, Any] = {
        "engine": LOCAL_MODEL,
        "strategies": [s.value for s in strategies],
        "aggression": aggression,
        "threshold": threshold,
        "symbols": [s.symbol for s in context.symbols],
    }
    assessments = [a for a in (_assess(s, strategies) for s in context.symbols) if a]
    if not assessments:
        return _hold(preface + "No symbol has a price to act on."), request
    best = max(assessments, key=lambda a: abs(a.score))
    summary = (
        f"{best.symbol.symbol} at {decimal_to_str(best.price)}: {best.notes()}. "
        f"Score {best.score:+.2f} against threshold {threshold:.2f} (aggression {aggression:.2f})."
    )
    if abs(best.score) < threshold or best.score == 0:
        return _hold(f"{preface}Hold: no signal strong enough. {summary}", best), request
    confidence = _confidence(best.score)
    if best.side is OrderSide.BUY:
        decision = _buy(context, best, confidence, f"{preface}{summary}")
    else:
        decision = _sell(context, best, confidence, threshold, f"{preface}{summary}")
    return decision, request


def _clip(reasoning: str) -> str:
    return reasoning if len(reasoning) <= _MAX_REASONING else reasoning[: _MAX_REASONING - 1] + "…"


def _confidence(score: float) -> Decimal:
    value = Decimal(str(0.5 + 0.4 * min(abs(score), 1.0)))
    return value.quantize(_CONFIDENCE_STEP, rounding=ROUND_DOWN)


def _hold(reasoning: str, best: _Assessment | None = None) -> Decision:
    return Decision(
        decision_type=DecisionType.HOLD,
        symbol=best.symbol.symbol if best else None,
        reasoning=_clip(reasoning),
        confidence_score=Decimal("0.5"),
    )


def _order_type_and_limit(
    context: AgentContext, side: OrderSide, price: Decimal
) -> tuple[OrderType, Decimal | None, str]:
    if context.aggression >= TIMID_AGGRESSION:
        return OrderType.MARKET, None, "market order"
    exponent = min(int(price.as_tuple().exponent), -2)
    step = Decimal(1).scaleb(exponent)
    if side is OrderSide.BUY:
        limit = (price * (1 - LIMIT_OFFSET)).quantize(step, rounding=ROUND_FLOOR)
    else:
        limit = (price * (1 + LIMIT_OFFSET)).quantize(step, rounding=ROUND_CEILING)
    return OrderType.LIMIT, limit, f"limit order at {decimal_to_str(limit)} (cautious personality)"


def _buy(context: AgentContext, best: _Assessment, confidence: Decimal, summary: str) -> Decision:
    symbol = best.symbol.symbol
    portfolio, risk = context.portfolio, context.risk
    if risk.daily_loss_remaining is not None and risk.daily_loss_remaining <= 0:
        return Decision(
            decision_type=DecisionType.RISK_CHECK,
            symbol=symbol,
            reasoning=_clip(
                "Buy signal, but the daily loss limit is used up (remaining "
                f"{decimal_to_str(risk.daily_loss_remaining)}): no new exposure. {summary}"
            ),
            confidence_score=Decimal("0.9"),
        )
    equity = portfolio.equity
    if equity <= 0:
        return _hold(f"Buy signal, but equity is {decimal_to_str(equity)}. {summary}", best)
    position = portfolio.position(symbol)
    held_value = Decimal(0)
    if position is not None:
        held_value = position.market_value or position.quantity * best.price
    if (
        position is None
        and risk.max_open_positions is not None
        and len([p for p in portfolio.positions if p.quantity > 0]) >= risk.max_open_positions
    ):
        return _hold(
            f"Buy signal, but {risk.max_open_positions} positions are already open. {summary}", best
        )
    aggression = Decimal(str(round(context.aggression, 4)))
    wanted = BASE_FRACTION[context.risk_level] * (Decimal("0.5") + aggression) * confidence
    caps = {
        "sizing rule": wanted,
        "max position": (context.max_position_pct / 100) - held_value / equity,
        "cash": portfolio.cash / equity,
    }
    if risk.max_position_value is not None:
        caps["risk max position value"] = (risk.max_position_value - held_value) / equity
    if risk.max_order_value is not None:
        caps["risk max order value"] = risk.max_order_value / equity
    binding = min(caps, key=lambda k: caps[k])
    fraction = min(caps[binding], Decimal(1)).quantize(_FRACTION_STEP, rounding=ROUND_DOWN)
    if fraction <= 0:
        return _hold(f"Buy signal, but no room left under the {binding} limit. {summary}", best)
    order_type, limit, how = _order_type_and_limit(context, OrderSide.BUY, best.price)
    sizing = f"Buy {decimal_to_str(fraction)} of equity ({binding} binds), {how}."
    return Decision(
        decision_type=DecisionType.TRADE,
        symbol=symbol,
        side=OrderSide.BUY,
        fraction_of_equity=fraction,
        order_type=order_type,
        limit_price=limit,
        reasoning=_clip(f"{summary} {sizing}"),
        confidence_score=confidence,
    )


def _sell(
    context: AgentContext, best: _Assessment, confidence: Decimal, threshold: float, summary: str
) -> Decision:
    symbol = best.symbol.symbol
    position = context.portfolio.position(symbol)
    if position is None or position.quantity <= 0:
        return _hold(f"Sell signal, but no {symbol} position to sell (spot only). {summary}", best)
    strong = abs(best.score) >= 2 * threshold
    quantity = position.quantity if strong else position.quantity / 2
    order_type, limit, how = _order_type_and_limit(context, OrderSide.SELL, best.price)
    portion = "the whole position" if strong else "half the position"
    return Decision(
        decision_type=DecisionType.TRADE,
        symbol=symbol,
        side=OrderSide.SELL,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit,
        reasoning=_clip(f"{summary} Sell {portion}, {decimal_to_str(quantity)} {symbol}, {how}."),
        confidence_score=confidence,
    )
