"""What an agent sees when it decides, and what its account shows.

`ContextBuilder.see` reads the agent, its account marked to market, its recent
decisions and today's model spend in one read, and the market context of its symbols
(ticker, candles, indicators), which agents deciding within AGENT_CONTEXT_TTL_SECONDS
share. The result carries the `AgentContext` the model gets and the `Inputs` sizing
and the risk check use; both are logged with the decision, so it can be replayed.
Assembling them from what was read is pure (`symbol_context`, `assemble_context`): an
agent backtest builds its contexts with the same functions (services/backtests/).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import PairRules
from core.config import AgentSettings
from database.orm import Agent, Order, TradingAccount
from database.orm.types import utcnow
from database.repositories import agents as agents_repo
from database.repositories import decisions as decisions_repo
from database.repositories import llm_calls as llm_calls_repo
from database.repositories import orders as order_repo
from database.repositories import portfolio as portfolio_repo
from database.repositories import signals as signal_repo
from database.repositories import strategies as strategy_repo
from database.repositories.decisions import SummaryRow
from database.repositories.llm_calls import Usage
from models.agents import AgentStats
from models.decisions import (
    AgentContext,
    CandleData,
    DecisionSummary,
    OpenOrderData,
    PortfolioData,
    PositionData,
    RiskBudget,
    StrategySignalData,
    SymbolContext,
    SymbolTerms,
    TickerData,
)
from models.enums import DecisionType, OrderSide, OrderType
from services.agents.planning import Inputs, Quote
from services.agents.risk import Holding, OpenOrder, RiskLimits, RiskSnapshot
from services.infra.database import DatabaseService
from services.market_data.service import MarketDataService
from services.paper_trading.fees import FeeRates
from services.portfolio.service import PortfolioService
from utils.candles import timeframe_delta
from utils.indicators import indicator_snapshot
from utils.performance import win_rate

_ZERO = Decimal(0)
# A decision's logged context keeps every candle the agent saw (its indicators were
# computed from all of them), so a replay runs on exactly what the decision ran on.


@dataclass(frozen=True, slots=True)
class Seen:
    """What one agent saw at the start of a cycle."""

    agent: Agent
    account: TradingAccount
    context: AgentContext
    inputs: Inputs
    spent_today: Usage
    last_decided_at: datetime | None

    def logged_context(self) -> dict[str, Any]:
        """The context as the agent got it, whole, and the inputs sizing and risk used:
        what a replay needs to run the decision again (services/agents/replay.py)."""
        data = self.context.model_dump(mode="json")
        for logged, seen in zip(data["symbols"], self.context.symbols, strict=True):
            logged["candles_seen"] = len(seen.candles)
        return {"context": data, "inputs": self.inputs.to_record()}


def utc_midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def owned_agent(
    session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID
) -> tuple[Agent, TradingAccount]:
    """The user's live agent and its account; NotFoundError otherwise."""
    return await agents_repo.find_owned(session, agent_id, user_id=user_id)


async def live_agents(
    session: AsyncSession, user_id: uuid.UUID
) -> list[tuple[Agent, TradingAccount]]:
    """The user's agents that are not deleted, with their accounts, oldest first."""
    return await agents_repo.live_agents(session, user_id=user_id)


async def last_decided(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """When each agent last decided: its newest decision row (absent if it has none)."""
    return await decisions_repo.last_decided(session, agent_ids)


async def spent_today(session: AsyncSession, agent_id: uuid.UUID) -> Usage:
    """The agent's model calls since UTC midnight: the cost of those of known cost, how
    many had an unknown cost (never counted as free), and their tokens."""
    return await llm_calls_repo.usage_since(session, agent_id, since=utc_midnight(utcnow()))


class ContextBuilder:
    def __init__(
        self,
        database: DatabaseService,
        market: MarketDataService,
        portfolio: PortfolioService,
        config: AgentSettings,
    ) -> None:
        self._database = database
        self._market = market
        self._portfolio = portfolio
        self._config = config
        self._symbol_cache: dict[str, tuple[float, asyncio.Future[SymbolContext]]] = {}

    async def stats(self, session: AsyncSession, account: TradingAccount) -> AgentStats:
        valuation = await self._portfolio.value_account(session, account)
        return AgentStats(
            equity=valuation.equity,
            total_pnl=valuation.total_pnl,
            realized_pnl=valuation.realized_pnl,
            unrealized_pnl=valuation.unrealized_pnl,
            fees=valuation.fees,
            trades_count=account.total_trades,
            winning_trades=account.winning_trades,
            losing_trades=account.losing_trades,
            win_rate=win_rate(account.winning_trades, account.total_trades),
        )

    async def see(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> Seen:
        now = utcnow()
        async with self._database.database.read() as session:
            agent, account = await owned_agent(session, user_id, agent_id)
            valuation = await self._portfolio.value_account(session, account)
            # Only what the summaries show: the rows' logged context is large.
            recent = await decisions_repo.recent_summaries(
                session, agent.id, limit=self._config.recent_decisions
            )
            spent = await spent_today(session, agent.id)
            day_start = await self._day_start_equity(session, account, now)
            open_rows = await order_repo.open_of(session, user_id=user_id, account_id=account.id)
            signals = await followed_signals(session, agent)
        symbols = [await self._symbol_context(s) for s in agent.symbols]
        free = {b.asset: b.free for b in valuation.balances}
        holdings: dict[str, Holding] = {}
        for position in valuation.positions:
            base = self._market.pair_rules(position.symbol).base_asset
            holdings[position.symbol] = Holding(
                quantity_free=free.get(base, _ZERO),
                quantity=position.quantity,
                mark_price=position.mark_price or position.avg_price,
            )
        markets: dict[str, SymbolMarket] = {}
        for symbol in agent.symbols:
            ticker = self._market.ticker(symbol)
            rules = self._market.pair_rules(symbol)
            markets[symbol] = SymbolMarket(
                Quote(ticker.bid, ticker.ask, rules.step_size),
                rules,
                self._portfolio.fees.rates(account, rules),
            )
        view = AccountView(
            quote_currency=account.base_currency,
            cash=valuation.cash,
            free_cash=valuation.free_cash,
            equity=valuation.equity,
            day_start_equity=day_start,
            positions=[
                PositionData(
                    symbol=p.symbol,
                    quantity=p.quantity,
                    average_price=p.avg_price,
                    market_value=p.market_value,
                    unrealized_pnl=p.unrealized_pnl,
                )
                for p in valuation.positions
            ],
            holdings=holdings,
            open_orders=tuple(self._open_order(row, agent.id) for row in open_rows),
        )
        context, inputs = assemble_context(
            agent,
            now=now,
            symbols=symbols,
            account=view,
            markets=markets,
            config=self._config,
            spent=spent,
            recent=[_summary(d) for d in recent],
            signals=signals,
        )
        last = recent[0].created_at if recent else None
        return Seen(agent, account, context, inputs, spent, last)

    def _open_order(self, row: Order, agent_id: uuid.UUID) -> OpenOrder:
        """An open order as the risk check counts it: priced at its limit, else its
        stop, else the touch it would trade at."""
        side = OrderSide(row.side)
        price = row.price if row.price is not None else row.stop_price
        if price is None:
            ticker = self._market.ticker(row.symbol)
            price = ticker.ask if side is OrderSide.BUY else ticker.bid
        return OpenOrder(
            id=str(row.id),
            symbol=row.symbol,
            side=side,
            order_type=OrderType(row.order_type),
            remaining=row.quantity - row.filled_quantity,
            price=price,
            limit_price=row.price,
            stop_price=row.stop_price,
            placed_at=row.created_at,
            by_agent=row.agent_id == agent_id,
        )

    async def _day_start_equity(
        self, session: AsyncSession, account: TradingAccount, now: datetime
    ) -> Decimal | None:
        midnight = utc_midnight(now)
        if account.created_at >= midnight:
            return account.initial_balance
        latest = await portfolio_repo.latest_snapshot_at_or_before(
            session, account.id, user_id=account.user_id, at=midnight
        )
        return None if latest is None else latest[0]

    async def _symbol_context(self, symbol: str) -> SymbolContext:
        """Ticker, candles and indicators of a symbol, shared for a short while; agents
        asking at the same moment wait for one read instead of each making their own."""
        cached = self._symbol_cache.get(symbol)
        if cached is not None:
            built_at, future = cached
            if time.monotonic() - built_at < self._config.context_ttl_seconds or not future.done():
                return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._symbol_cache[symbol] = (time.monotonic(), future)
        try:
            context = await self._read_symbol(symbol)
        except asyncio.CancelledError:
            self._symbol_cache.pop(symbol, None)
            future.cancel()
            raise
        except Exception as e:
            self._symbol_cache.pop(symbol, None)
            future.set_exception(e)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        future.set_result(context)
        return context

    async def _read_symbol(self, symbol: str) -> SymbolContext:
        timeframe = self._config.candle_timeframe
        candles = await self._market.candles(
            symbol, timeframe=timeframe, limit=self._config.candle_limit
        )
        ticker = self._market.ticker(symbol)
        # The market's clock is its ticks' time: a candle that ends after the latest tick
        # is still open.
        return symbol_context(
            symbol,
            timeframe=timeframe,
            candles=[CandleData.model_validate(c) for c in candles],
            ticker=TickerData.model_validate(ticker),
            clock=ticker.timestamp,
        )


@dataclass(frozen=True, slots=True)
class AccountView:
    """The account as a decision sees it, marked to market: the live account
    (`ContextBuilder.see`) or a backtest's simulated one (services/backtests/agents.py)."""

    quote_currency: str
    cash: Decimal
    free_cash: Decimal
    equity: Decimal
    day_start_equity: Decimal | None
    positions: list[PositionData]
    holdings: dict[str, Holding]
    open_orders: tuple[OpenOrder, ...] = ()


@dataclass(frozen=True, slots=True)
class SymbolMarket:
    """What sizing and the terms need of one of the agent's symbols."""

    quote: Quote
    rules: PairRules
    rates: FeeRates


def symbol_context(
    symbol: str,
    *,
    timeframe: str,
    candles: list[CandleData],
    ticker: TickerData,
    clock: datetime | None,
) -> SymbolContext:
    """A symbol's part of the context: its ticker, its candles (the last marked partial
    when it ends after `clock`) and the indicators on them. Pure, so live cycles and
    backtests build it alike."""
    if candles and clock is not None and candles[-1].open_time + timeframe_delta(timeframe) > clock:
        candles[-1] = candles[-1].model_copy(update={"partial": True})
    return SymbolContext(
        symbol=symbol,
        ticker=ticker,
        timeframe=timeframe,
        candles=candles,
        indicators=indicator_snapshot([c.close for c in candles]) if candles else None,
    )


def assemble_context(
    agent: Agent,
    *,
    now: datetime,
    symbols: list[SymbolContext],
    account: AccountView,
    markets: dict[str, SymbolMarket],
    config: AgentSettings,
    spent: Usage,
    recent: list[DecisionSummary],
    signals: list[StrategySignalData] | None = None,
) -> tuple[AgentContext, Inputs]:
    """The context the model gets and the inputs sizing and the risk check use, from
    what was read. Pure: the live cycle and a backtest's simulated clock share it."""
    equity = account.equity
    limits = RiskLimits.for_agent(
        risk_tolerance=agent.risk_tolerance,
        max_position_pct=agent.max_position_pct,
        max_open_positions=config.max_open_positions,
        max_daily_loss_pct=config.max_daily_loss_pct,
    )
    # One rate for the risk checks: the highest taker rate the agent may pay.
    fee_bps = max((m.rates.taker_bps for m in markets.values()), default=_ZERO)
    inputs = Inputs(
        equity=equity,
        cash_free=account.free_cash,
        fee_bps=fee_bps,
        day_start_equity=account.day_start_equity,
        holdings=account.holdings,
        quotes={symbol: m.quote for symbol, m in markets.items()},
        limits=limits,
        open_orders=account.open_orders,
    )
    snapshot = inputs.snapshot()
    exposed = len(snapshot.exposed_symbols())
    limit = limits.max_open_positions
    max_position = equity * limits.max_position_pct / 100
    context = AgentContext(
        agent_id=str(agent.id),
        agent_name=agent.name,
        personality=agent.personality,
        strategies=agent.strategies,
        risk_tolerance=agent.risk_tolerance,
        max_position_pct=agent.max_position_pct,
        quote_currency=account.quote_currency,
        as_of=now,
        symbols=symbols,
        portfolio=PortfolioData(cash=account.cash, equity=equity, positions=account.positions),
        risk=_budget(agent, limits, equity, account.day_start_equity, spent).model_copy(
            update={
                "min_confidence": limits.min_confidence,
                "max_order_pct": limits.max_order_pct,
                "max_daily_loss_pct": limits.max_daily_loss_pct,
                "open_positions": exposed,
                "open_positions_remaining": None if limit is None else max(0, limit - exposed),
            }
        ),
        terms=[
            _terms(symbol, m.rules, m.rates, snapshot, max_position)
            for symbol, m in markets.items()
        ],
        open_orders=[_open_order_data(o, now) for o in account.open_orders],
        recent_decisions=recent,
        signals=signals or [],
    )
    return context, inputs


async def followed_signals(session: AsyncSession, agent: Agent) -> list[StrategySignalData]:
    """The latest signal of each strategy the agent lists (by name, among its owner's
    strategies) on each of its symbols."""
    if not agent.strategies:
        return []
    strategies = await strategy_repo.named(session, agent.strategies, user_id=agent.user_id)
    names = {s.id: s for s in strategies}
    rows = await signal_repo.latest_signals(
        session, user_id=agent.user_id, strategy_ids=list(names), symbols=agent.symbols
    )
    return [
        StrategySignalData(
            strategy=names[row.strategy_id].name,
            strategy_type=names[row.strategy_id].strategy_type,
            symbol=row.symbol,
            timeframe=row.timeframe,
            candle_open_time=row.candle_open_time,
            action=row.action,
            position=int(row.signal_metadata.get("position", 0)),
            strength=row.strength,
            confidence=row.confidence,
            price=row.price,
        )
        for row in rows
        if row.strategy_id in names
    ]


def _terms(
    symbol: str, rules: PairRules, rates: FeeRates, snapshot: RiskSnapshot, max_position: Decimal
) -> SymbolTerms:
    holding = snapshot.holdings.get(symbol)
    exposure = holding.quantity * holding.mark_price if holding is not None else _ZERO
    exposure += sum((o.notional for o in snapshot.open_buys(symbol)), _ZERO)
    return SymbolTerms(
        symbol=symbol,
        maker_fee_bps=rates.maker_bps,
        taker_fee_bps=rates.taker_bps,
        quantity_step=rules.step_size,
        price_tick=rules.tick_size,
        min_quantity=rules.min_quantity,
        min_notional=rules.min_notional,
        position_value=exposure,
        position_room=max(_ZERO, max_position - exposure),
    )


def _open_order_data(order: OpenOrder, now: datetime) -> OpenOrderData:
    return OpenOrderData(
        id=order.id,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        remaining_quantity=order.remaining,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        age_seconds=max(0, int((now - order.placed_at).total_seconds())),
        placed_by_agent=order.by_agent,
    )


def _summary(row: SummaryRow) -> DecisionSummary:
    return DecisionSummary(
        created_at=row.created_at,
        decision_type=DecisionType(row.decision_type or DecisionType.ANALYSIS.value),
        symbol=row.symbol,
        side=OrderSide(row.side) if row.side else None,
        status=row.status,
        confidence_score=row.confidence_score,
        reasoning=row.reasoning[:500],
    )


def _budget(
    agent: Agent,
    limits: RiskLimits,
    equity: Decimal,
    day_start: Decimal | None,
    spent: Usage,
) -> RiskBudget:
    max_loss = None
    remaining_loss = None
    if limits.max_daily_loss_pct is not None and day_start is not None:
        max_loss = day_start * limits.max_daily_loss_pct / 100
        remaining_loss = max(_ZERO, max_loss - max(_ZERO, day_start - equity))
    return RiskBudget(
        max_position_value=equity * limits.max_position_pct / 100,
        max_order_value=(
            equity * limits.max_order_pct / 100 if limits.max_order_pct is not None else None
        ),
        max_open_positions=limits.max_open_positions,
        max_daily_loss=max_loss,
        daily_loss_remaining=remaining_loss,
        # Of known cost only: calls of unknown cost are not guessed at.
        daily_cost_budget_remaining=max(_ZERO, agent.daily_cost_budget - spent.cost),
    )
