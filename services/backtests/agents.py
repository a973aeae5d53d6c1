"""Backtests of AI agents: the agent's decision cycle over stored history on a simulated
clock, with point-in-time gating, the paper exchange's fees, the agent's risk limits,
model answers kept by prompt hash, and a cost estimate refused above a ceiling.

`AgentBacktester.backtest` checks the request, estimates the cost (decisions x the
first decision's prompt tokens and an answer's tokens x the model's price), refuses a
run above AGENT_BACKTEST_MAX_COST_USD or AGENT_BACKTEST_MAX_DECISIONS, then reads each
symbol's closed candles once and runs the loop (services/backtests/agent_run.py). The
result has the same metrics as a strategy backtest (engine.measure) and, for each
symbol, buy-and-hold over the same period through the strategy engine itself. The
rules are in docs/backtests.md, "Agent backtests".

The run takes `progress(done, total)` and `cancelled()` callables, called between
decisions, so it can run as a job.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal

import numpy as np
import structlog

from connectors.base import PairRules
from core.config import AgentSettings, LLMSettings
from core.exceptions import ValidationFailedError
from core.service_registry import ServiceHealth
from database.orm import Agent, TradingAccount
from database.orm.types import utcnow
from database.repositories import agents as agents_repo
from database.repositories import backtest_runs as run_repo
from database.repositories import risk as risk_repo
from models.agent_backtests import (
    AgentBacktestEstimate,
    AgentBacktestRead,
    AgentBacktestRequest,
    AgentBacktestResult,
    AgentFillRead,
    AgentPositionRead,
    AgentTradeRead,
    BuyAndHoldRead,
    ModelCallsRead,
)
from models.backtest_runs import BacktestRunRead
from models.decisions import DECISION_TOOL_NAME, Decision
from models.enums import BacktestKind
from models.strategies import (
    MAX_BACKTEST_CANDLES,
    BacktestMetricsRead,
    BacktestTradeRead,
    EquityPoint,
)
from services.agents.decision_log import decision_symbol
from services.backtests.agent_run import (
    AgentRun,
    Cancelled,
    Costs,
    Observer,
    Outcome,
    Progress,
)
from services.backtests.engine import (
    PNL_QUANTUM,
    BacktestConfig,
    BacktestMetrics,
    CandleSeries,
    InvalidBacktestError,
    measure,
)
from services.backtests.jobs import BacktestJobs, Report, finished_run
from services.backtests.jobs import Outcome as JobOutcome
from services.backtests.model_cache import LOCAL, ModelAnswers
from services.backtests.point_in_time import GatedMarket
from services.backtests.service import BacktestService
from services.backtests.simulated_account import SimulatedAccount
from services.backtests.vectorized import run_vectorized
from services.infra.database import DatabaseService
from services.llm.pricing import PriceTable
from services.llm.prompts import AnswerStyle, system_prompt, user_prompt
from services.llm.service import LLMService
from services.market_data.service import MarketDataService
from services.paper_trading.fees import FeeRates
from services.portfolio.service import PortfolioService
from services.risk.gate import rule_of
from services.strategies.service import equity_indices
from utils.candles import timeframe_delta

log = structlog.get_logger(__name__)


def _outcome(read: AgentBacktestRead, result: AgentBacktestResult) -> JobOutcome:
    """A finished agent backtest as a stored run: the headline figures listed, the
    whole read kept."""
    summary = result.model_dump(
        mode="json", exclude={"fills", "trades", "open_positions", "equity_curve"}
    )
    return JobOutcome(
        summary={"status": read.status, **summary}, result=read.model_dump(mode="json")
    )


# A decision's answer (reasoning first, then the fields), as a budget of tokens.
COMPLETION_TOKENS_PER_CALL = 400
# Characters per token of JSON-heavy English, the usual rough rule.
_CHARS_PER_TOKEN = 4


class AgentBacktester:
    def __init__(
        self,
        database: DatabaseService,
        market: MarketDataService,
        backtests: BacktestService,
        portfolio: PortfolioService,
        llm: LLMService,
        config: AgentSettings,
        llm_settings: LLMSettings,
        jobs: BacktestJobs,
    ) -> None:
        self._jobs = jobs
        self._database = database
        self._market = market
        self._backtests = backtests
        self._portfolio = portfolio
        self._llm = llm
        self._config = config
        self._prices = PriceTable(llm_settings.llm_prices)
        self.runs = 0

    async def start(self) -> None:
        """Nothing to start: a backtest holds no resources between runs."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy("ready", runs=self.runs)

    async def backtest(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        request: AgentBacktestRequest,
        *,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
        observe: Observer | None = None,
    ) -> AgentBacktestRead:
        """Runs the agent's decisions over [start, end) on the simulated clock and stores
        the run (`run_id`), or only estimates their cost (`estimate_only`, not stored).
        Refused (422) above the cost ceiling or the decision limit, before anything is
        asked. `observe` is handed each context the model is given, in order."""
        started_at = utcnow()
        read = await self._backtest(
            user_id, agent_id, request, progress=progress, cancelled=cancelled, observe=observe
        )
        result = read.result
        if result is None:
            return read
        run_id = uuid.uuid4()
        read = read.model_copy(update={"run_id": run_id})
        async with self._database.database.transaction() as session:
            await run_repo.add_run(
                session,
                finished_run(
                    user_id,
                    kind=BacktestKind.AGENT,
                    subject_id=agent_id,
                    request=request.model_dump(mode="json"),
                    outcome=_outcome(read, result),
                    started_at=started_at,
                    run_id=run_id,
                ),
            )
        return read

    async def start_backtest(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, request: AgentBacktestRequest
    ) -> BacktestRunRead:
        """The same backtest as a job: estimated now (the same 404 and 422, the cost
        ceiling included), then run in the background with its progress on the
        `backtests` channel, cancellable between decisions."""
        await self._backtest(user_id, agent_id, request.model_copy(update={"estimate_only": True}))

        async def work(run_id: uuid.UUID, report: Report) -> JobOutcome:
            async def progress(done: int, total: int) -> None:
                await report("deciding", done / total)

            read = await self._backtest(user_id, agent_id, request, progress=progress)
            if read.result is None:  # pragma: no cover - not an estimate: always a result
                raise RuntimeError("an agent backtest ended without a result")
            return _outcome(read.model_copy(update={"run_id": run_id}), read.result)

        return await self._jobs.submit(
            user_id,
            kind=BacktestKind.AGENT,
            subject_id=agent_id,
            request=request.model_dump(mode="json"),
            work=work,
        )

    async def _backtest(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        request: AgentBacktestRequest,
        *,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
        observe: Observer | None = None,
    ) -> AgentBacktestRead:
        async with self._database.database.read() as session:
            agent, account = await agents_repo.find_owned(session, agent_id, user_id=user_id)
            limits = await risk_repo.limits_of(
                session, user_id=user_id, account_id=account.id, active=True
            )
        symbols = self._symbols(agent, request.symbols)
        timeframe = self._config.candle_timeframe
        delta = timeframe_delta(timeframe)
        # Never past the market's clock: a decision there would be in the future.
        clock = min(self._market.ticker(s).timestamp for s in symbols)
        end = clock if request.end is None else min(request.end, clock)
        if end <= request.start:
            raise ValidationFailedError(
                "end must be after start",
                details={"start": request.start.isoformat(), "end": end.isoformat()},
            )
        interval = self._interval(agent, request, delta)
        times = self._times(request.start, end, interval)
        rules = {s: self._market.pair_rules(s) for s in symbols}
        rates = self._rates(account, rules, request.fee_bps)
        initial_cash = request.initial_cash or account.initial_balance
        _check_costs(initial_cash, request)
        since = self._history_start(request.start, end, delta)
        candles = {
            s: await self._backtests.read_candles(s, timeframe=timeframe, start=since, end=end)
            for s in symbols
        }
        # Off the event loop: up to MAX_BACKTEST_CANDLES candles per symbol become models.
        market = await asyncio.to_thread(
            GatedMarket, candles, timeframe=timeframe, limit=self._config.candle_limit
        )
        cash = SimulatedAccount(initial_cash)
        answers = ModelAnswers(
            self._database,
            self._llm,
            user_id=user_id,
            agent_id=agent.id,
            provider=self._llm.provider_name(agent.llm_provider),
            model=agent.llm_model,
        )
        run = AgentRun(
            agent,
            quote_currency=account.base_currency,
            market=market,
            rules=rules,
            rates=rates,
            costs=Costs(
                slippage_bps=request.slippage_bps,
                slippage_range_share=request.slippage_range_share,
            ),
            account=cash,
            answers=answers,
            config=self._config,
            resolve=self._resolve,
            observe=observe,
            limits=[rule_of(limit) for limit in limits],
            account_id=account.id,
        )
        estimate = self._estimate(run, answers, times, interval)
        if request.estimate_only:
            return AgentBacktestRead(agent_id=agent.id, status="estimated", estimate=estimate)
        began = time.perf_counter()
        outcome = await run.run(times, progress=progress, cancelled=cancelled)
        self.runs += 1
        log.info(
            "agent_backtest_run",
            agent_id=str(agent.id),
            decisions=len(outcome.times),
            asked=outcome.calls.asked,
            cached=outcome.calls.cached,
            seconds=round(time.perf_counter() - began, 3),
        )
        result = self._result(
            run, outcome, market, symbols, end, initial_cash, rules, rates, request
        )
        return AgentBacktestRead(
            agent_id=agent.id,
            status="cancelled" if outcome.cancelled else "completed",
            estimate=estimate,
            result=result,
        )

    # -- the request -------------------------------------------------------------------

    def _symbols(self, agent: Agent, wanted: list[str] | None) -> list[str]:
        own = [self._market.resolve_symbol(s) for s in agent.symbols]
        if not own:
            raise ValidationFailedError(
                "the agent trades no symbol: nothing to backtest", code="no_symbols"
            )
        if wanted is None:
            return own
        chosen = list(dict.fromkeys(self._market.resolve_symbol(s) for s in wanted))
        foreign = [s for s in chosen if s not in own]
        if foreign:
            raise ValidationFailedError(
                f"not among the agent's symbols: {', '.join(foreign)}",
                details={"symbols": foreign, "agent_symbols": own},
            )
        return chosen

    def _interval(self, agent: Agent, request: AgentBacktestRequest, delta: timedelta) -> timedelta:
        if request.every is not None:
            interval = timeframe_delta(request.every.value)
        else:
            interval = timedelta(seconds=agent.decision_interval_seconds)
        if interval < delta:
            raise ValidationFailedError(
                f"decisions every {int(interval.total_seconds())} s are more often than the "
                f"{self._config.candle_timeframe} candles the agent sees (AGENT_CANDLE_TIMEFRAME): "
                "set `every` to the candle timeframe or longer",
                details={"every_seconds": int(interval.total_seconds())},
            )
        return interval

    def _times(self, start: datetime, end: datetime, interval: timedelta) -> list[datetime]:
        count = math.ceil((end - start) / interval)
        limit = self._config.backtest_max_decisions
        if count > limit:
            raise ValidationFailedError(
                f"the period holds {count} decisions, more than the {limit} a backtest may "
                "make (AGENT_BACKTEST_MAX_DECISIONS): shorten it or decide less often",
                code="too_many_decisions",
                details={"decisions": count, "max_decisions": limit},
            )
        return [start + interval * i for i in range(count)]

    def _history_start(self, start: datetime, end: datetime, delta: timedelta) -> datetime:
        """Where the candles are read from: AGENT_CANDLE_LIMIT candles before the first
        decision; the span is bounded as a strategy backtest's is."""
        try:
            since = start - delta * self._config.candle_limit
        except OverflowError:  # a start at the first moments datetime has
            since = datetime.min.replace(tzinfo=UTC)
        span = (end - since) // delta
        if span > MAX_BACKTEST_CANDLES:
            raise ValidationFailedError(
                f"the period spans {span} {self._config.candle_timeframe} candles with the "
                f"agent's history, more than the {MAX_BACKTEST_CANDLES} a backtest reads: "
                "shorten it",
                details={"candles": span, "max_candles": MAX_BACKTEST_CANDLES},
            )
        return since

    def _rates(
        self, account: TradingAccount, rules: dict[str, PairRules], fee_bps: Decimal | None
    ) -> dict[str, FeeRates]:
        rates = {s: self._portfolio.fees.rates(account, r) for s, r in rules.items()}
        if fee_bps is None:
            return rates
        return {s: FeeRates(r.maker_bps, fee_bps) for s, r in rates.items()}

    def _resolve(self, decision: Decision) -> str | None:
        return decision_symbol(self._market, decision)

    # -- the estimate ------------------------------------------------------------------

    def _estimate(
        self,
        run: AgentRun,
        answers: ModelAnswers,
        times: list[datetime],
        interval: timedelta,
    ) -> AgentBacktestEstimate:
        """decisions x (the first decision's prompt at the input price + an answer at
        the output price); refused above the ceiling, and for a model with no price."""
        ceiling = self._config.backtest_max_cost_usd
        free = answers.provider == LOCAL
        prompt_tokens = 0 if free else self._prompt_tokens(run, times[0])
        completion_tokens = 0 if free else COMPLETION_TOKENS_PER_CALL
        cost = Decimal(0)
        if not free:
            price = self._prices.price(answers.model)
            if price is None:
                raise ValidationFailedError(
                    f"the model {answers.model!r} has no price, so a backtest's cost cannot "
                    "be estimated: price it in LLM_PRICES",
                    code="model_unpriced",
                    details={"provider": answers.provider, "model": answers.model},
                )
            per_call = price.cost(prompt_tokens, completion_tokens)
            cost = (per_call * len(times)).quantize(Decimal("1e-6"), rounding=ROUND_CEILING)
        estimate = AgentBacktestEstimate(
            decisions=len(times),
            decision_interval_seconds=int(interval.total_seconds()),
            provider=answers.provider,
            model=answers.model,
            free=free,
            prompt_tokens_per_call=prompt_tokens,
            completion_tokens_per_call=completion_tokens,
            estimated_cost=cost,
            max_cost=ceiling,
            max_decisions=self._config.backtest_max_decisions,
        )
        if cost > ceiling:
            raise ValidationFailedError(
                f"the backtest's estimated cost of {cost} USD ({len(times)} decisions) is over "
                f"the ceiling of {ceiling} USD (AGENT_BACKTEST_MAX_COST_USD): shorten the "
                "period, decide less often, or use a cheaper model",
                code="backtest_cost_exceeded",
                details={
                    "estimated_cost": str(cost),
                    "max_cost": str(ceiling),
                    "decisions": len(times),
                },
            )
        return estimate

    @staticmethod
    def _prompt_tokens(run: AgentRun, at: datetime) -> int:
        context = run.first_context(at)
        schema = json.dumps(Decision.model_json_schema())
        text = system_prompt(context, AnswerStyle.TOOL_CALL) + user_prompt(context) + schema
        return math.ceil((len(text) + len(DECISION_TOOL_NAME)) / _CHARS_PER_TOKEN)

    # -- the result --------------------------------------------------------------------

    def _result(
        self,
        run: AgentRun,
        outcome: Outcome,
        market: GatedMarket,
        symbols: list[str],
        end: datetime,
        initial_cash: Decimal,
        rules: dict[str, PairRules],
        rates: dict[str, FeeRates],
        request: AgentBacktestRequest,
    ) -> AgentBacktestResult:
        account = run.account
        final_marks = run.marks(end)
        final_equity = account.equity(final_marks).quantize(PNL_QUANTUM)
        times = [*outcome.times, end]
        equity = [*outcome.equity, final_equity]
        in_market = [*outcome.in_market, bool(account.lots)]
        stamps = np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[us]")
        curve = np.array([float(e) for e in equity], dtype=np.float64)
        metrics = measure(
            stamps,
            curve,
            np.array(in_market, dtype=np.bool_),
            [t.trade for t in account.trades],
            initial_cash=initial_cash,
            final_equity=final_equity,
        )
        calls = outcome.calls
        first = outcome.times[0] if outcome.times else request.start
        last = outcome.times[-1] if outcome.times else request.start
        return AgentBacktestResult(
            symbols=symbols,
            timeframe=market.timeframe,
            fee_bps={s: rates[s].taker_bps for s in symbols},
            initial_cash=initial_cash,
            first_decision_at=first,
            last_decision_at=last,
            decisions=len(outcome.times),
            actions=dict(outcome.actions),
            fills=[AgentFillRead.model_validate(f) for f in account.fills],
            trades=[
                AgentTradeRead(symbol=t.symbol, **dict(BacktestTradeRead.model_validate(t.trade)))
                for t in account.trades
            ],
            open_positions=[
                AgentPositionRead(
                    symbol=s,
                    quantity=lot.quantity,
                    average_price=lot.average_price,
                    mark_price=final_marks.get(s, lot.average_price),
                )
                for s, lot in account.lots.items()
            ],
            final_cash=account.cash,
            final_equity=final_equity,
            fees=account.fees,
            metrics=metrics_read(metrics),
            buy_and_hold=[
                self._buy_and_hold(
                    market, s, first, end, initial_cash, rules[s], rates[s].taker_bps, run.costs
                )
                for s in symbols
            ],
            equity_curve=[
                EquityPoint(time=times[i], equity=float(curve[i]))
                for i in equity_indices(len(curve))
            ],
            model_calls=ModelCallsRead(
                asked=calls.asked,
                cached=calls.cached,
                local=calls.local,
                failed=calls.failed,
                prompt_tokens=calls.prompt_tokens,
                completion_tokens=calls.completion_tokens,
                cost=calls.cost,
            ),
        )

    @staticmethod
    def _buy_and_hold(
        market: GatedMarket,
        symbol: str,
        first: datetime,
        end: datetime,
        initial_cash: Decimal,
        rules: PairRules,
        fee_bps: Decimal,
        costs: Costs,
    ) -> BuyAndHoldRead:
        """The strategy engine, always long from the candle closed at the first decision:
        it buys at the open of the next, as the agent's first order would."""
        before = market.closed(symbol, first)[-1:]
        candles = before + market.candles_from(symbol, first, end)
        config = BacktestConfig(
            initial_cash=initial_cash,
            fee_bps=fee_bps,
            slippage_bps=costs.slippage_bps,
            slippage_range_share=costs.slippage_range_share,
            quantity_step=rules.step_size,
        )
        if len(candles) < 2:
            empty = measure(
                np.array([], dtype="datetime64[us]"),
                np.array([], dtype=np.float64),
                np.array([], dtype=np.bool_),
                [],
                initial_cash=initial_cash,
                final_equity=initial_cash,
            )
            return BuyAndHoldRead(
                symbol=symbol, final_equity=initial_cash, metrics=metrics_read(empty)
            )
        series = CandleSeries.from_candles(candles)
        result = run_vectorized(series, np.ones(len(series), dtype=np.int8), config)
        return BuyAndHoldRead(
            symbol=symbol, final_equity=result.final_equity, metrics=metrics_read(result.metrics)
        )


def _check_costs(initial_cash: Decimal, request: AgentBacktestRequest) -> None:
    """The cash and slippage as the strategy engine takes them (cash to 1e-8, at most
    10^15): buy-and-hold runs on it."""
    try:
        BacktestConfig(
            initial_cash=initial_cash,
            slippage_bps=request.slippage_bps,
            slippage_range_share=request.slippage_range_share,
        )
    except InvalidBacktestError as e:
        raise ValidationFailedError(str(e), details={"field": e.field}) from e


def metrics_read(m: BacktestMetrics) -> BacktestMetricsRead:
    """The metrics as a strategy backtest shows them (a JSON number is never NaN)."""
    return BacktestMetricsRead(
        total_return=m.total_return,
        cagr=_finite(m.cagr),
        sharpe=_finite(m.sharpe),
        sortino=_finite(m.sortino),
        max_drawdown=_finite(m.max_drawdown),
        win_rate=m.win_rate,
        profit_factor=m.profit_factor,
        exposure=_finite(m.exposure),
        trades=m.trades,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
