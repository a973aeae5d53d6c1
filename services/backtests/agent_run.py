"""One agent backtest's loop: at each simulated decision time, the context through the
gated market, the model's answer, sizing and the agent's risk checks, and the fill on
the next candle. services/backtests/agents.py prepares it and reads the result.

Each decision is made exactly as a live cycle makes it, on the simulated account:

1. the context is assembled by the live code (`assemble_context`) from the gated
   market (candles closed by the decision time, a ticker from the last of them) and
   the simulated account marked at those closes; its recent decisions are the run's
   own, newest first;
2. the model answers (services/backtests/model_cache.py);
3. `planning.plan` sizes the decision and runs the agent's risk checks (`RiskLimits`
   of the agent, AGENT_MAX_OPEN_POSITIONS and AGENT_MAX_DAILY_LOSS_PCT; the day's
   starting equity is the account's mark at the day's first decision);
4. a buy or sell fills on the first candle opening at or after the decision time and
   before the next decision: a market order at its open with slippage against the
   trader, a limit order if the candle reaches its limit, at the open or the limit,
   whichever is better for the trader (no slippage); no such candle, or a limit not
   reached: the order expires. Every fill pays the taker fee (`fee_for`). A buy is cut
   to what the cash affords at the fill price; a sell to what is held; either below
   the pair's minimum quantity or notional is refused, and so is one the user's active
   trading limits refuse (services/risk/limits.py on the simulated account, as the paper
   exchange's pre-trade check). Stop orders, rebalances and cancels are not simulated
   (counted as `not_simulated`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, localcontext

from connectors.base import Candle, PairRules
from core.config import AgentSettings
from database.orm import Agent
from database.repositories.llm_calls import Usage
from models.decisions import AgentContext, Decision, DecisionSummary, PositionData
from models.enums import DecisionType, OrderSide, OrderType
from services.agents.context import AccountView, SymbolMarket, assemble_context
from services.agents.planning import Inputs, Plan, Quote, plan
from services.agents.risk import Holding
from services.backtests.engine import QUANTUM
from services.backtests.model_cache import Answer, ModelAnswers
from services.backtests.point_in_time import GatedMarket
from services.backtests.simulated_account import SimulatedAccount
from services.paper_trading.fees import FeeRates
from services.paper_trading.matching import MONEY_CONTEXT
from services.risk.limits import breaches, evaluate
from services.risk.state import AccountState, LimitRule, OrderIntent

Progress = Callable[[int, int], Awaitable[None]]
Cancelled = Callable[[], bool]
Observer = Callable[[AgentContext], None]
_ZERO = Decimal(0)
_NO_USAGE = Usage(_ZERO, 0, 0)


@dataclass(frozen=True, slots=True)
class Costs:
    """Slippage of every fill; each symbol's fee is its taker rate (`rates`)."""

    slippage_bps: Decimal
    slippage_range_share: Decimal


@dataclass(slots=True)
class Calls:
    asked: int = 0
    cached: int = 0
    local: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = _ZERO

    def count(self, answer: Answer) -> None:
        if answer.source == "cached":
            self.cached += 1
            return
        if answer.source == "local":
            self.local += 1
        elif answer.source == "asked":
            self.asked += 1
        else:
            self.failed += 1
        self.prompt_tokens += answer.prompt_tokens
        self.completion_tokens += answer.completion_tokens
        if self.cost is not None:
            self.cost = None if answer.cost is None else self.cost + answer.cost


@dataclass(slots=True)
class Outcome:
    """What the run did, for the response."""

    times: list[datetime] = field(default_factory=list)
    equity: list[Decimal] = field(default_factory=list)
    in_market: list[bool] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    calls: Calls = field(default_factory=Calls)
    cancelled: bool = False


class AgentRun:
    def __init__(
        self,
        agent: Agent,
        *,
        quote_currency: str,
        market: GatedMarket,
        rules: dict[str, PairRules],
        rates: dict[str, FeeRates],
        costs: Costs,
        account: SimulatedAccount,
        answers: ModelAnswers,
        config: AgentSettings,
        resolve: Callable[[Decision], str | None],
        observe: Observer | None = None,
        limits: Sequence[LimitRule] = (),
        account_id: uuid.UUID | None = None,
    ) -> None:
        """`resolve`: the decision's symbol as the market names it (None: none);
        `observe`: handed each context before the model gets it; `limits`: the user's
        active trading limits over the agent's account, checked before each fill."""
        self._limits = tuple(limits)
        self._account_id = account_id or uuid.uuid4()
        self._peak: Decimal | None = None
        self._agent = agent
        self._resolve = resolve
        self._currency = quote_currency
        self._market = market
        self._rules = rules
        self._rates = rates
        self.costs = costs
        self.account = account
        self._answers = answers
        self._config = config
        self._observe = observe
        self._recent: list[DecisionSummary] = []
        self._day: tuple[int, int, int] | None = None
        self._day_start: Decimal | None = None

    async def run(
        self,
        times: list[datetime],
        *,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
    ) -> Outcome:
        """Decides at each of `times` in turn; `progress(done, total)` is awaited after
        each decision (it may raise to stop the run), and `cancelled()` called before
        each: true stops the run there."""
        outcome = Outcome()
        total = len(times)
        for index, at in enumerate(times):
            if cancelled is not None and cancelled():
                outcome.cancelled = True
                break
            following = times[index + 1] if index + 1 < total else None
            await self._decide(at, following, outcome)
            if progress is not None:
                await progress(index + 1, total)
            # A long CPU-bound run (the local rules) lets the rest of the server run.
            await asyncio.sleep(0)
        return outcome

    def marks(self, at: datetime) -> dict[str, Decimal]:
        marks = {}
        for symbol in self._market.symbols:
            close = self._market.last_close(symbol, at)
            if close is not None:
                marks[symbol] = close
        return marks

    def _view(self, at: datetime, marks: dict[str, Decimal]) -> AccountView:
        account = self.account
        equity = account.equity(marks)
        self._peak = equity if self._peak is None else max(self._peak, equity)
        day = (at.year, at.month, at.day)
        if day != self._day:
            self._day, self._day_start = day, equity
        positions, holdings = [], {}
        for symbol, lot in account.lots.items():
            mark = marks.get(symbol, lot.average_price)
            with localcontext(MONEY_CONTEXT):
                value = lot.quantity * mark
            positions.append(
                PositionData(
                    symbol=symbol,
                    quantity=lot.quantity,
                    average_price=lot.average_price,
                    market_value=value,
                    unrealized_pnl=value - lot.cost,
                )
            )
            holdings[symbol] = Holding(lot.quantity, lot.quantity, mark)
        return AccountView(
            quote_currency=self._currency,
            cash=account.cash,
            free_cash=account.cash,
            equity=equity,
            day_start_equity=self._day_start,
            positions=positions,
            holdings=holdings,
        )

    def _context(
        self, at: datetime, marks: dict[str, Decimal], view: AccountView
    ) -> tuple[AgentContext, Inputs]:
        markets = {
            symbol: SymbolMarket(
                Quote(marks[symbol], marks[symbol], self._rules[symbol].step_size),
                self._rules[symbol],
                self._rates[symbol],
            )
            for symbol in self._market.symbols
            if symbol in marks
        }
        return assemble_context(
            self._agent,
            now=at,
            symbols=[self._market.context(symbol, at) for symbol in self._market.symbols],
            account=view,
            markets=markets,
            config=self._config,
            spent=_NO_USAGE,
            recent=self._recent[: self._config.recent_decisions],
        )

    def first_context(self, at: datetime) -> AgentContext:
        """The context a decision at `at` would get now (for the cost estimate)."""
        marks = self.marks(at)
        return self._context(at, marks, self._view(at, marks))[0]

    async def _decide(self, at: datetime, following: datetime | None, outcome: Outcome) -> None:
        marks = self.marks(at)
        view = self._view(at, marks)
        outcome.times.append(at)
        outcome.equity.append(view.equity)
        outcome.in_market.append(bool(self.account.lots))
        context, inputs = self._context(at, marks, view)
        if self._observe is not None:
            self._observe(context)
        answer = await self._answers.decide(context)
        outcome.calls.count(answer)
        decision = answer.decision
        if decision is None:
            outcome.actions["error"] += 1
            return
        symbol = self._resolve(decision)
        planned = plan(decision, symbol, inputs)
        action, status = self._act(decision, symbol, planned, at, following)
        outcome.actions[action] += 1
        self._remember(decision, symbol, at, status)

    def _act(
        self,
        decision: Decision,
        symbol: str | None,
        planned: Plan,
        at: datetime,
        following: datetime | None,
    ) -> tuple[str, str]:
        """(what came of it, the status its summary shows)."""
        if planned.action in ("rebalance", "cancel"):
            return "not_simulated", "skipped"
        if planned.action == "none":
            return "hold", "skipped"
        if planned.action == "refused" or planned.quantity is None or symbol is None:
            return "refused", "rejected"
        order_type = decision.order_type or OrderType.MARKET
        if order_type not in (OrderType.MARKET, OrderType.LIMIT):
            return "not_simulated", "skipped"
        candle = self._market.fill_candle(symbol, at, following)
        if candle is None:
            return "expired", "rejected"
        side = OrderSide.BUY if planned.action == "buy" else OrderSide.SELL
        price = self._fill_price(side, order_type, decision.limit_price, candle)
        if price is None:
            return "expired", "rejected"
        rules, fee = self._rules[symbol], self._rates[symbol].taker_bps
        if side is OrderSide.BUY:
            quantity = min(planned.quantity, self.account.affordable(price, fee, rules.step_size))
        else:
            quantity = _floor(min(planned.quantity, self.account.held(symbol)), rules.step_size)
        if quantity <= 0 or quantity < rules.min_quantity or quantity * price < rules.min_notional:
            return "refused", "rejected"
        if self._limited(symbol, side, quantity * price, order_type, at):
            return "refused", "rejected"
        fill = self.account.buy if side is OrderSide.BUY else self.account.sell
        fill(symbol, quantity, price, fee, time=candle.open_time, decided_at=at)
        return side.value, "executed"

    def _limited(
        self, symbol: str, side: OrderSide, notional: Decimal, order_type: OrderType, at: datetime
    ) -> bool:
        """Whether one of the user's trading limits refuses the order, measured on the
        simulated account at the decision's marks as the paper exchange's pre-trade check
        measures a real one (services/risk/limits.py); nothing rests here, so no order
        is open."""
        if not self._limits:
            return False
        marks = self.marks(at)
        exposures = {}
        for held, lot in self.account.lots.items():
            with localcontext(MONEY_CONTEXT):
                exposures[held] = lot.quantity * marks.get(held, lot.average_price)
        state = AccountState(
            account_id=self._account_id,
            equity=self.account.equity(marks),
            day_start_equity=self._day_start,
            peak_equity=self._peak,
            exposures=exposures,
        )
        intent = OrderIntent(symbol, side, notional, rests=order_type is not OrderType.MARKET)
        return bool(breaches(evaluate(state, self._limits, intent)))

    def _fill_price(
        self, side: OrderSide, order_type: OrderType, limit: Decimal | None, candle: Candle
    ) -> Decimal | None:
        if order_type is OrderType.LIMIT and limit is not None:
            if side is OrderSide.BUY:
                return min(candle.open, limit) if candle.low <= limit else None
            return max(candle.open, limit) if candle.high >= limit else None
        costs = self.costs
        with localcontext(MONEY_CONTEXT):
            raw = candle.open * costs.slippage_bps / 10_000 + costs.slippage_range_share * (
                candle.high - candle.low
            )
            slip = raw.quantize(QUANTUM, rounding=ROUND_CEILING)
        if side is OrderSide.BUY:
            return candle.open + slip
        return max(candle.open - slip, QUANTUM)

    def _remember(self, decision: Decision, symbol: str | None, at: datetime, status: str) -> None:
        summary = DecisionSummary(
            created_at=at,
            decision_type=decision.decision_type,
            symbol=symbol,
            side=decision.side if decision.decision_type is DecisionType.TRADE else None,
            status=status,
            confidence_score=decision.confidence_score,
            reasoning=decision.reasoning[:500],
        )
        self._recent.insert(0, summary)
        del self._recent[max(self._config.recent_decisions, 1) :]


def _floor(quantity: Decimal, step: Decimal) -> Decimal:
    with localcontext(MONEY_CONTEXT):
        return (
            (quantity / step).to_integral_value(rounding=ROUND_DOWN) * step
            if step > 0
            else quantity
        )
