"""Strategies, the entry point: a user's strategies (the seed's CRUD) with parameters
checked against their type, and a strategy's backtest, stored on it.

- Only the five built-in types can be created (models/strategy_params.py); their
  parameters are validated on every write and stored normalized (defaults filled in),
  so what a backtest runs is what GET shows.
- A backtest (services/backtests/service.py) runs the stored parameters; the run's
  summary becomes the strategy's `backtest_results` and its metrics its
  `performance_metrics`. The rules of fills, costs and metrics: docs/backtests.md.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import structlog
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import ConflictError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from database.orm import Strategy
from database.orm.types import utcnow
from database.repositories import backtest_runs as run_repo
from database.repositories import signals as signal_repo
from database.repositories import strategies as strategy_repo
from models.backtest_runs import BacktestRunRead
from models.enums import BacktestKind, SignalAction
from models.signals import SignalList, SignalRead
from models.strategies import (
    MAX_BACKTEST_CANDLES,
    MAX_EQUITY_POINTS,
    BacktestConfigRead,
    BacktestMetricsRead,
    BacktestRead,
    BacktestRequest,
    BacktestSummary,
    BacktestTradeRead,
    EquityPoint,
    OpenPositionRead,
    StrategyCreate,
    StrategyList,
    StrategyRead,
    StrategyUpdate,
)
from models.strategy_params import (
    STRATEGY_KINDS,
    ArbitrageParams,
    StrategyParams,
    kind_of,
    parse_parameters,
)
from services.backtests.jobs import BacktestJobs, Outcome, Report, finished_run
from services.backtests.service import BacktestPlan, BacktestRun, BacktestService
from services.infra.database import DatabaseService

log = structlog.get_logger(__name__)


def strategy_read(strategy: Strategy) -> StrategyRead:
    return StrategyRead.model_validate(strategy)


def checked_parameters(kind: str, raw: Mapping[str, Any]) -> StrategyParams:
    """The parameters as the type's model reads them; a 422 whose `details.errors` name
    each bad parameter (`parameters.<name>`), as request validation names fields."""
    if kind not in STRATEGY_KINDS:
        raise ValidationFailedError(
            f"strategy type {kind!r} has no built-in parameters or signals; the built-in "
            f"types are {', '.join(STRATEGY_KINDS)}",
            details={"strategy_type": kind},
        )
    try:
        return parse_parameters(kind, raw)
    except PydanticValidationError as e:
        errors = [
            {
                "field": ".".join(["parameters", *(str(part) for part in err["loc"])]),
                "message": err["msg"],
                "type": err["type"],
            }
            for err in e.errors()
        ]
        first = errors[0]
        raise ValidationFailedError(
            f"{first['field']}: {first['message']}", details={"errors": errors}
        ) from e


def _normalized(params: StrategyParams) -> dict[str, Any]:
    stored: dict[str, Any] = params.model_dump(mode="json")
    return stored


def traded_symbols(market: SymbolResolver, raw: Sequence[str]) -> list[str]:
    """The symbols as the market names them; a 422 naming the first one it does not trade
    (or one named twice, BTC-USD and BTC/USD being one)."""
    symbols: list[str] = []
    for index, name in enumerate(raw):
        try:
            symbol = market.resolve_symbol(name)
        except NotFoundError as e:
            raise ValidationFailedError(
                f"symbols.{index}: the market does not trade {name!r}",
                details={"errors": [{"field": f"symbols.{index}", "message": e.message}]},
            ) from e
        if symbol in symbols:
            raise ValidationFailedError(
                f"symbols.{index}: {symbol} is named twice",
                details={"errors": [{"field": f"symbols.{index}", "message": "named twice"}]},
            )
        symbols.append(symbol)
    return symbols


class SymbolResolver(Protocol):
    def resolve_symbol(self, raw: str) -> str: ...


class StrategyService:
    def __init__(
        self,
        database: DatabaseService,
        backtests: BacktestService,
        market: SymbolResolver,
        jobs: BacktestJobs,
    ) -> None:
        self._database = database
        self._backtests = backtests
        self._market = market
        self._jobs = jobs
        self.backtests_run = 0

    async def start(self) -> None:
        """Nothing to start: no loop of its own yet."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy("ok", backtests_run=self.backtests_run)

    # -- CRUD --------------------------------------------------------------------------

    async def create_strategy(self, user_id: uuid.UUID, request: StrategyCreate) -> StrategyRead:
        """A new strategy of a built-in type, its parameters checked and stored with
        their defaults; 409 when the user has a strategy of that name."""
        params = self._checked(request.strategy_type, request.parameters)
        symbols = traded_symbols(self._market, request.symbols)
        now = utcnow()
        async with _unique_name(request.name):
            async with self._database.database.transaction() as session:
                await self._check_name(session, user_id, request.name, None)
                strategy = await strategy_repo.add_strategy(
                    session,
                    Strategy(
                        user_id=user_id,
                        name=request.name,
                        description=request.description,
                        strategy_type=request.strategy_type,
                        parameters=_normalized(params),
                        risk_level=request.risk_level.value,
                        is_active=request.is_active,
                        symbols=symbols,
                        timeframe=request.timeframe.value,
                        performance_metrics={},
                        backtest_results={},
                        created_at=now,
                        updated_at=now,
                    ),
                )
                read = strategy_read(strategy)
        log.info("strategy_created", strategy_id=str(read.id), strategy_type=read.strategy_type)
        return read

    async def list_strategies(
        self, user_id: uuid.UUID, *, active: bool | None = None
    ) -> StrategyList:
        """The user's strategies, oldest first."""
        async with self._database.database.read() as session:
            rows = await strategy_repo.strategies_of(session, user_id=user_id, active=active)
            items = [strategy_read(row) for row in rows]
        return StrategyList(items=items, count=len(items))

    async def get_strategy(self, user_id: uuid.UUID, strategy_id: uuid.UUID) -> StrategyRead:
        async with self._database.database.read() as session:
            return strategy_read(await self._owned(session, user_id, strategy_id))

    async def update_strategy(
        self, user_id: uuid.UUID, strategy_id: uuid.UUID, changes: StrategyUpdate
    ) -> StrategyRead:
        """Only the fields sent change. New parameters or a new type are checked against
        the (new) type, and the parameters stored normalized; 409 on a taken name."""
        fields = {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None}
        if "description" in changes.model_fields_set:
            fields["description"] = changes.description  # null clears it
        name = fields.get("name")
        if "symbols" in fields:
            fields["symbols"] = traded_symbols(self._market, fields["symbols"])
        if "timeframe" in fields:
            fields["timeframe"] = fields["timeframe"].value
        async with _unique_name(name):
            async with self._database.database.transaction() as session:
                strategy = await self._owned(session, user_id, strategy_id)
                if name is not None:
                    await self._check_name(session, user_id, name, strategy.id)
                if "parameters" in fields or "strategy_type" in fields:
                    kind = fields.get("strategy_type", strategy.strategy_type)
                    raw = fields.get("parameters", strategy.parameters)
                    fields["parameters"] = _normalized(self._checked(kind, raw))
                if "risk_level" in fields:
                    fields["risk_level"] = fields["risk_level"].value
                for field, value in fields.items():
                    setattr(strategy, field, value)
                strategy.updated_at = utcnow()
                await session.flush()
                read = strategy_read(strategy)
        return read

    async def delete_strategy(self, user_id: uuid.UUID, strategy_id: uuid.UUID) -> None:
        """Deleted with its stored backtest; agents that name it no longer find it."""
        async with self._database.database.transaction() as session:
            strategy = await self._owned(session, user_id, strategy_id)
            await strategy_repo.delete_strategy(session, strategy)
        log.info("strategy_deleted", strategy_id=str(strategy_id))

    # -- backtests ---------------------------------------------------------------------

    async def backtest(
        self, user_id: uuid.UUID, strategy_id: uuid.UUID, request: BacktestRequest
    ) -> BacktestRead:
        """Runs the strategy's stored parameters over the period (at most
        MAX_BACKTEST_CANDLES candles), stores it as a run, its summary as the strategy's
        `backtest_results` and the metrics as its `performance_metrics`."""
        started_at = utcnow()
        plan = await self._plan(user_id, strategy_id, request)
        # The run holds no transaction: it can take seconds, and reads only candles.
        run = await self._backtests.execute(plan)
        run_id = uuid.uuid4()
        read, outcome = _outcome(strategy_id, run, request, run_id)
        async with self._database.database.transaction() as session:
            strategy = await self._owned(session, user_id, strategy_id)
            _store_on(strategy, read)
            await run_repo.add_run(
                session,
                finished_run(
                    user_id,
                    kind=BacktestKind.STRATEGY,
                    subject_id=strategy_id,
                    request=request.model_dump(mode="json"),
                    outcome=outcome,
                    started_at=started_at,
                    run_id=run_id,
                ),
            )
        self._ran(strategy_id, read)
        return read

    async def start_backtest(
        self, user_id: uuid.UUID, strategy_id: uuid.UUID, request: BacktestRequest
    ) -> BacktestRunRead:
        """The same backtest as a job: checked now (the same 404 and 422), queued, run in
        the background with its progress on the `backtests` channel; the run's result and
        the strategy's `backtest_results` are stored when it succeeds."""
        plan = await self._plan(user_id, strategy_id, request)

        async def work(run_id: uuid.UUID, report: Report) -> Outcome:
            run = await self._backtests.execute(plan, progress=report)
            await report("storing", 0.95)
            read, outcome = _outcome(strategy_id, run, request, run_id)
            async with self._database.database.transaction() as session:
                _store_on(await self._owned(session, user_id, strategy_id), read)
            self._ran(strategy_id, read)
            return outcome

        return await self._jobs.submit(
            user_id,
            kind=BacktestKind.STRATEGY,
            subject_id=strategy_id,
            request=request.model_dump(mode="json"),
            work=work,
        )

    async def _plan(
        self, user_id: uuid.UUID, strategy_id: uuid.UUID, request: BacktestRequest
    ) -> BacktestPlan:
        params = await self.runnable_params(user_id, strategy_id)
        return self._backtests.prepare(
            params,
            symbol=request.symbol,
            timeframe=request.timeframe.value,
            start=request.start,
            end=request.end,
            initial_cash=request.initial_cash,
            fee_bps=request.fee_bps,
            slippage_bps=request.slippage_bps,
            slippage_range_share=request.slippage_range_share,
            fill=request.fill,
            engine=request.engine,
            max_candles=MAX_BACKTEST_CANDLES,
            source=request.source,
        )

    def _ran(self, strategy_id: uuid.UUID, read: BacktestRead) -> None:
        self.backtests_run += 1
        log.info(
            "strategy_backtested",
            strategy_id=str(strategy_id),
            run_id=str(read.run_id),
            candles=read.candles,
            trades=read.metrics.trades,
        )

    async def runnable_params(self, user_id: uuid.UUID, strategy_id: uuid.UUID) -> StrategyParams:
        """The user's strategy's stored parameters as its type's model reads them: 404
        when there is no such strategy, 422 when they no longer run (an older type)."""
        async with self._database.database.read() as session:
            strategy = await self._owned(session, user_id, strategy_id)
            kind, raw = strategy.strategy_type, dict(strategy.parameters)
        try:
            return checked_parameters(kind, raw)
        except ValidationFailedError as e:
            raise ValidationFailedError(
                f"the strategy's stored parameters do not run: {e.message}; change them with PATCH",
                details={"strategy_id": str(strategy_id), **e.details},
            ) from e

    # -- signals -----------------------------------------------------------------------

    async def list_signals(
        self,
        user_id: uuid.UUID,
        strategy_id: uuid.UUID,
        *,
        symbol: str | None = None,
        action: SignalAction | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> SignalList:
        """The strategy's live signals, newest candle first; `before` (a candle's open
        time) pages back. A symbol it does not trade any more is still listed by name."""
        async with self._database.database.read() as session:
            await self._owned(session, user_id, strategy_id)
            rows = await signal_repo.signals_of(
                session,
                user_id=user_id,
                strategy_id=strategy_id,
                symbol=None if symbol is None else symbol.strip().upper().replace("-", "/"),
                actions=None if action is None else [action.value],
                before=before,
                limit=limit,
            )
            items = [SignalRead.model_validate(row) for row in rows]
        return SignalList(items=items, count=len(items))

    # -- helpers -----------------------------------------------------------------------

    def _checked(self, kind: str, raw: Mapping[str, Any]) -> StrategyParams:
        """The parameters as `checked_parameters` reads them; an arbitrage strategy's
        reference must be a symbol the market trades (a 422 naming it)."""
        params = checked_parameters(kind, raw)
        if isinstance(params, ArbitrageParams):
            try:
                reference = self._market.resolve_symbol(params.reference_symbol)
            except NotFoundError as e:
                field = "parameters.reference_symbol"
                raise ValidationFailedError(
                    f"{field}: the market does not trade {params.reference_symbol!r}",
                    details={"errors": [{"field": field, "message": e.message}]},
                ) from e
            params = params.model_copy(update={"reference_symbol": reference})
        return params

    async def _owned(
        self, session: AsyncSession, user_id: uuid.UUID, strategy_id: uuid.UUID
    ) -> Strategy:
        strategy = await strategy_repo.find_strategy(session, strategy_id, user_id=user_id)
        if strategy is None:
            raise NotFoundError(
                f"strategy {strategy_id} not found", details={"strategy_id": str(strategy_id)}
            )
        return strategy

    async def _check_name(
        self,
        session: AsyncSession,
        user_id: uuid.UUID,
        name: str,
        strategy_id: uuid.UUID | None,
    ) -> None:
        if await strategy_repo.name_taken(
            session, name, user_id=user_id, except_strategy_id=strategy_id
        ):
            raise _name_taken(name)


@asynccontextmanager
async def _unique_name(name: str | None) -> AsyncIterator[None]:
    """Two writers checking the same free name at once (PostgreSQL): the second one's
    write fails on UNIQUE(user_id, name), which is the same 409 as the check's."""
    try:
        yield
    except IntegrityError as e:
        if name is None:
            raise
        raise _name_taken(name) from e


def _name_taken(name: str) -> ConflictError:
    return ConflictError(
        f"a strategy named {name!r} exists: choose another name",
        code="name_taken",
        details={"name": name},
    )


# -- the run as the API shows it -----------------------------------------------------------


def _finite(value: float | None) -> float | None:
    # A JSON number cannot be NaN or infinite (nor can a JSONB value).
    return value if value is not None and math.isfinite(value) else None


def backtest_summary(
    run: BacktestRun, *, start: datetime, end: datetime | None, ran_at: datetime
) -> BacktestSummary:
    result, m = run.result, run.result.metrics
    return BacktestSummary(
        symbol=run.symbol,
        timeframe=run.timeframe,
        source=run.source,
        engine=run.engine,
        strategy_type=kind_of(run.params),
        parameters=_normalized(run.params),
        config=BacktestConfigRead.model_validate(run.config),
        start=start,
        end=end,
        first_open=run.first_open,
        last_open=run.last_open,
        candles=len(run.series),
        final_cash=result.final_cash,
        final_equity=result.final_equity,
        metrics=BacktestMetricsRead(
            total_return=m.total_return,
            cagr=_finite(m.cagr),
            sharpe=_finite(m.sharpe),
            sortino=_finite(m.sortino),
            max_drawdown=_finite(m.max_drawdown),
            win_rate=m.win_rate,
            profit_factor=m.profit_factor,
            exposure=_finite(m.exposure),
            trades=m.trades,
        ),
        ran_at=ran_at,
    )


def equity_indices(count: int, limit: int = MAX_EQUITY_POINTS) -> list[int]:
    """At most `limit` evenly spaced indices of `count`, the first and the last included."""
    if count <= limit:
        return list(range(count))
    return [int(i) for i in np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))]


def _outcome(
    strategy_id: uuid.UUID, run: BacktestRun, request: BacktestRequest, run_id: uuid.UUID
) -> tuple[BacktestRead, Outcome]:
    summary = backtest_summary(run, start=request.start, end=request.end, ran_at=utcnow())
    read = backtest_read(strategy_id, run, summary, run_id)
    return read, Outcome(
        summary=summary.model_dump(mode="json"), result=read.model_dump(mode="json")
    )


def _store_on(strategy: Strategy, read: BacktestRead) -> None:
    """The run's summary becomes the strategy's latest backtest."""
    summary = BacktestSummary.model_validate(
        read.model_dump(include=set(BacktestSummary.model_fields))
    )
    strategy.backtest_results = summary.model_dump(mode="json")
    strategy.performance_metrics = read.metrics.model_dump(mode="json")
    strategy.updated_at = utcnow()


def backtest_read(
    strategy_id: uuid.UUID, run: BacktestRun, summary: BacktestSummary, run_id: uuid.UUID
) -> BacktestRead:
    result = run.result
    equity = result.equity
    return BacktestRead(
        **dict(summary),
        strategy_id=strategy_id,
        run_id=run_id,
        trades=[BacktestTradeRead.model_validate(t) for t in result.trades],
        open_position=(
            None
            if result.open_position is None
            else OpenPositionRead.model_validate(result.open_position)
        ),
        equity_curve=[
            EquityPoint(time=run.series.time(i), equity=float(equity[i]))
            for i in equity_indices(len(equity))
        ],
    )
