"""An account's risk metrics: measured from its positions at the mark and their stored
daily closes, stored in `risk_metrics` (on a schedule and after fills, by the caller).

The book is the account's open positions, each worth quantity x mark (at cost without a
mark), or with `combined` every active account of the user with the values summed per
symbol. The history is each holding's closed daily candles (stored, else backfilled by
the market data service) of the last `RISK_HISTORY_DAYS` days; the scenarios are the
daily returns between the closes all the holdings share. Every statistic comes from
utils.risk_measures and utils.performance, in float (numpy): they are estimates, and
only their money figures become `Decimal`, quantized to 8 places. The definitions and
the choices (today's holdings through the history, fractions of equity, the empty book)
are in docs/metrics.md, "An account's stored metrics".

Closed daily candles do not change, so each symbol's closes are read once per UTC day
and kept in memory: measuring after every fill costs the account's read and the numpy
work, not a history query per holding.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from functools import reduce
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import structlog

from core.config import RiskSettings
from core.exceptions import NotFoundError, ValidationFailedError
from database.locking import consistent_reads
from database.orm import RiskMetric, TradingAccount
from database.orm.types import utcnow
from database.repositories import risk as risk_repo
from database.repositories.accounts import find_account, list_accounts
from models.enums import AssetClass
from models.risk_metrics import (
    CorrelationRead,
    LossEstimate,
    PositionRiskRead,
    RiskMetricsRead,
    TailRiskAtLevel,
    TailRiskRead,
)
from services.infra.database import DatabaseService
from services.market_data.service import MarketDataService
from services.portfolio.valuation import value_at_mark
from services.risk.history import daily_closes
from utils import performance, risk_measures

log = structlog.get_logger(__name__)

FloatArray = npt.NDArray[np.float64]

DEFAULT_HORIZON_DAYS = 10
MAX_HORIZON_DAYS = 365
# The confidence of the per-position figures and of the stored `value_at_risk` column.
POSITION_CONFIDENCE = 0.95
# Below 1 / (1 - 0.99) scenarios the 99% VaR and ES are the worst day or two: said so.
_FEW_SCENARIOS = 100
MONEY_QUANTUM = Decimal("1E-8")
RATIO_QUANTUM = Decimal("1E-10")

_ZERO = Decimal(0)
# Wide enough for any storable amount (10^20) at 10 places, so quantize never overflows.
_PRECISION = 40


@dataclass(frozen=True, slots=True)
class Holding:
    symbol: str
    asset_class: AssetClass | None
    quantity: Decimal
    value: Decimal


@dataclass(frozen=True, slots=True)
class Book:
    """What is measured: one account, or several summed per symbol (`account_id` None)."""

    account_id: uuid.UUID | None
    account_ids: tuple[uuid.UUID, ...]
    currency: str
    equity: Decimal
    cash: Decimal
    holdings: tuple[Holding, ...]


@dataclass(frozen=True, slots=True)
class Closes:
    """A symbol's closed daily closes, oldest first: UTC day ordinals and prices."""

    days: npt.NDArray[np.int64]
    prices: FloatArray

    def __len__(self) -> int:
        return int(self.days.size)


_NO_CLOSES = Closes(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


class RiskMeasurer:
    def __init__(
        self,
        database: DatabaseService,
        market: MarketDataService,
        settings: RiskSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._market = market
        self._settings = settings
        self._clock = clock
        # (symbol, UTC day) -> its closes up to the day before; only today's are kept.
        self._closes: dict[tuple[str, date], Closes] = {}
        self._closes_day: date | None = None
        # Reads of a symbol's history (cache misses): what the cache saves is visible.
        self.history_reads = 0

    async def measure(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None,
        combined: bool = False,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
    ) -> RiskMetricsRead:
        """The account's (None: the default one's; combined: all the user's active
        accounts') risk now; another user's account is not found."""
        if not 1 <= horizon_days <= MAX_HORIZON_DAYS:
            raise ValidationFailedError(
                f"horizon_days must be between 1 and {MAX_HORIZON_DAYS}",
                details={"horizon_days": horizon_days},
            )
        now = self._clock()
        book = await self._book(user_id, account_id=account_id, combined=combined)
        histories = {h.symbol: await self.closes(h.symbol, now=now) for h in book.holdings}
        benchmark = self._benchmark_symbol()
        bench = await self.closes(benchmark, now=now) if benchmark else None
        return measure_book(
            book,
            histories,
            benchmark=benchmark or self._settings.benchmark_symbol,
            benchmark_closes=bench,
            horizon_days=horizon_days,
            calculated_at=now,
        )

    async def store(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None,
        combined: bool = False,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
    ) -> RiskMetricsRead:
        """Measures the account now and stores the measurement as a `risk_metrics` row."""
        metrics = await self.measure(
            user_id, account_id=account_id, combined=combined, horizon_days=horizon_days
        )
        row = RiskMetric(
            user_id=user_id,
            account_id=metrics.account_id,
            portfolio_risk=_ratio(metrics.volatility),
            value_at_risk=metrics.tail.historical_95.one_day.var,
            max_drawdown=_ratio(metrics.max_drawdown),
            sharpe_ratio=_ratio(metrics.sharpe_ratio),
            position_risks={
                p.symbol: p.model_dump(mode="json", exclude={"symbol"})
                for p in metrics.position_risks
            },
            metrics=metrics.model_dump(mode="json"),
            calculated_at=metrics.calculated_at,
        )
        async with self._database.database.transaction() as session:
            await risk_repo.add_metric(session, row)
        log.info(
            "risk_metrics_stored",
            user_id=str(user_id),
            account_id=str(metrics.account_id) if metrics.account_id else None,
            holdings=len(metrics.position_risks),
        )
        return metrics

    async def latest(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None, combined: bool = False
    ) -> RiskMetricsRead | None:
        """The newest stored measurement of the account (combined: of all the user's
        accounts together); None when none was stored."""
        _check_scope(account_id, combined)
        async with self._database.database.read() as session:
            target = None if combined else (await find_account(session, user_id, account_id)).id
            row = await risk_repo.latest_metric(session, user_id=user_id, account_id=target)
        return None if row is None else RiskMetricsRead.model_validate(row.metrics)

    async def _book(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None, combined: bool
    ) -> Book:
        _check_scope(account_id, combined)
        async with self._database.database.read() as session:
            # Balances and positions from one snapshot, so a fill between them is not
            # counted half (PostgreSQL; SQLite's read transaction already does).
            await consistent_reads(session)
            if combined:
                accounts = [a for a in await list_accounts(session, user_id) if a.is_active]
                if not accounts:
                    raise NotFoundError("no active account", details={"user_id": str(user_id)})
            else:
                accounts = [await find_account(session, user_id, account_id)]
            valuations = [await value_at_mark(session, a, self._market) for a in accounts]
        currency = _one_currency(accounts)
        quantities: dict[str, Decimal] = {}
        values: dict[str, Decimal] = {}
        for valuation in valuations:
            for p in valuation.positions:
                value = p.market_value if p.market_value is not None else p.cost_basis
                quantities[p.symbol] = quantities.get(p.symbol, _ZERO) + p.quantity
                values[p.symbol] = values.get(p.symbol, _ZERO) + value
        holdings = tuple(
            Holding(symbol, self._asset_class(symbol), quantities[symbol], values[symbol])
            for symbol in sorted(values)
        )
        return Book(
            account_id=None if combined else accounts[0].id,
            account_ids=tuple(a.id for a in accounts),
            currency=currency,
            equity=sum((v.equity for v in valuations), _ZERO),
            cash=sum((v.cash for v in valuations), _ZERO),
            holdings=holdings,
        )

    def _asset_class(self, symbol: str) -> AssetClass | None:
        try:
            return AssetClass(self._market.pair_rules(symbol).asset_class.value)
        except NotFoundError:
            return None

    def _benchmark_symbol(self) -> str | None:
        try:
            return self._market.resolve_symbol(self._settings.benchmark_symbol)
        except NotFoundError:
            return None

    async def closes(self, symbol: str, *, now: datetime | None = None) -> Closes:
        """The symbol's daily closes of the `history_days + 1` days before today (UTC),
        read once a day (module doc); none for a symbol the market does not list."""
        today = (now or self._clock()).astimezone(UTC).date()
        if today != self._closes_day:
            self._closes.clear()
            self._closes_day = today
        cached = self._closes.get((symbol, today))
        if cached is None:
            cached = await self._read_closes(symbol, today)
            self._closes[(symbol, today)] = cached
        return cached

    async def _read_closes(self, symbol: str, today: date) -> Closes:
        self.history_reads += 1
        try:
            by_day = await daily_closes(
                self._market, symbol, today=today, days=self._settings.history_days
            )
        except NotFoundError:
            return _NO_CLOSES
        days = sorted(by_day)
        return Closes(
            np.asarray([d.toordinal() for d in days], dtype=np.int64),
            np.asarray([float(by_day[d]) for d in days], dtype=np.float64),
        )


@dataclass(frozen=True, slots=True)
class Scenarios:
    """The holdings with history, their closes on the days they all have, and what
    holding today's values through each day's returns would have gained or lost."""

    holdings: tuple[Holding, ...]
    days: npt.NDArray[np.int64]
    closes: FloatArray
    returns: FloatArray
    values: FloatArray
    pnl: FloatArray

    @property
    def count(self) -> int:
        return int(self.returns.shape[0])


def measure_book(
    book: Book,
    histories: dict[str, Closes],
    *,
    benchmark: str,
    benchmark_closes: Closes | None,
    horizon_days: int,
    calculated_at: datetime,
) -> RiskMetricsRead:
    """The metrics of `book` from the holdings' closes (docs/metrics.md). Pure."""
    notes: list[str] = []
    equity = float(book.equity)
    if equity <= 0:
        notes.append("equity is not positive: no figure is given as a fraction of it")
    scenarios = _scenarios(book, histories, notes)
    measured = scenarios.holdings if scenarios else ()
    periods = risk_measures.periods_for(h.asset_class for h in measured if h.asset_class)
    stats = _Statistics()
    if not book.holdings:
        notes.append(
            "no holdings: nothing is at risk (VaR and ES are 0); the return statistics, "
            "beta and concentration are undefined"
        )
        tail = _tail_of_nothing(equity, horizon_days)
    elif scenarios is None:
        tail = _tail_unknown()
    else:
        tail = _tail(scenarios.pnl, equity, horizon_days)
        if equity > 0:
            stats = _Statistics.of(scenarios.pnl / equity, periods)
            stats.beta, why = _beta(scenarios, equity, benchmark, benchmark_closes)
            notes.extend([why] if why else [])
    all_values = np.asarray([float(h.value) for h in book.holdings], dtype=np.float64)
    exposure = risk_measures.exposures(all_values)
    return RiskMetricsRead(
        account_id=book.account_id,
        account_ids=list(book.account_ids),
        calculated_at=calculated_at,
        currency=book.currency,
        equity=book.equity,
        cash=book.cash,
        periods_per_year=periods if measured else None,
        history_days=scenarios.count if scenarios else 0,
        history_start=date.fromordinal(int(scenarios.days[0])) if scenarios else None,
        history_end=date.fromordinal(int(scenarios.days[-1])) if scenarios else None,
        horizon_days=horizon_days,
        tail=tail,
        volatility=stats.volatility,
        max_drawdown=stats.max_drawdown,
        sharpe_ratio=stats.sharpe,
        sortino_ratio=stats.sortino,
        beta=stats.beta,
        benchmark_symbol=benchmark,
        gross_exposure=_money(exposure.gross) or _ZERO,
        net_exposure=_money(exposure.net) or _ZERO,
        concentration=_finite(risk_measures.concentration(all_values)),
        correlation=_correlation(scenarios),
        position_risks=_position_risks(book.holdings, scenarios, equity, periods),
        notes=notes,
    )


def _scenarios(book: Book, histories: dict[str, Closes], notes: list[str]) -> Scenarios | None:
    """The book's scenarios, None without any; what they leave out goes to `notes`."""
    measured = tuple(h for h in book.holdings if len(histories.get(h.symbol, _NO_CLOSES)) >= 2)
    unmeasured = [h.symbol for h in book.holdings if h not in measured]
    if unmeasured:
        notes.append(
            f"no daily price history for {', '.join(unmeasured)}: left out of VaR, ES and "
            "the return statistics (counted in equity and exposure)"
        )
    if not measured:
        return None
    series = [histories[h.symbol] for h in measured]
    days: npt.NDArray[np.int64] = reduce(np.intersect1d, (s.days for s in series))
    if days.size < 2:
        notes.append("the holdings share fewer than two daily closes: no scenarios")
        return None
    closes = np.column_stack([s.prices[np.searchsorted(s.days, days)] for s in series])
    returns = risk_measures.returns_from_prices(closes)
    if returns.shape[0] < _FEW_SCENARIOS:
        shortest = min(measured, key=lambda h: len(histories[h.symbol])).symbol
        notes.append(
            f"only {returns.shape[0]} daily returns ({shortest} has the shortest history): "
            "the 99% figures rest on the one or two worst days"
        )
    values = np.asarray([float(h.value) for h in measured], dtype=np.float64)
    pnl = risk_measures.portfolio_pnl(returns, values)
    return Scenarios(measured, days, closes, returns, values, pnl)


@dataclass(slots=True)
class _Statistics:
    volatility: float | None = None
    max_drawdown: float | None = None
    sharpe: float | None = None
    sortino: float | None = None
    beta: float | None = None

    @classmethod
    def of(cls, returns: FloatArray, periods: int) -> _Statistics:
        return cls(
            volatility=_finite(performance.volatility(returns, periods)),
            max_drawdown=_finite(risk_measures.max_drawdown_from_returns(returns)),
            sharpe=_finite(performance.sharpe_ratio(returns, periods)),
            sortino=_finite(performance.sortino_ratio(returns, periods)),
        )


def _beta(
    scenarios: Scenarios, equity: float, benchmark: str, benchmark_closes: Closes | None
) -> tuple[float | None, str | None]:
    """Beta of the portfolio returns on the days the holdings and the benchmark share,
    or None and why."""
    if benchmark_closes is None:
        return None, f"beta: the benchmark {benchmark} is not a listed symbol"
    shared, rows, bench_rows = np.intersect1d(
        scenarios.days, benchmark_closes.days, return_indices=True
    )
    if shared.size < 3:
        return None, f"beta: the holdings and {benchmark} share fewer than three daily closes"
    returns = risk_measures.returns_from_prices(scenarios.closes[rows])
    portfolio = risk_measures.portfolio_pnl(returns, scenarios.values) / equity
    bench = risk_measures.returns_from_prices(benchmark_closes.prices[bench_rows])
    value = _finite(risk_measures.beta(portfolio, bench))
    return value, None if value is not None else f"beta: {benchmark} did not move"


def _tail(pnl: FloatArray, equity: float, horizon_days: int) -> TailRiskRead:
    # The sample standard deviation, as volatility uses; a single scenario has none.
    std = float(np.std(pnl, ddof=1)) if pnl.size >= 2 else math.nan
    mean = float(np.mean(pnl))
    levels: dict[str, TailRiskAtLevel] = {}
    for confidence, label in ((0.95, "95"), (0.99, "99")):
        levels[f"historical_{label}"] = _level(
            risk_measures.historical_var(pnl, confidence),
            risk_measures.historical_es(pnl, confidence),
            equity,
            horizon_days,
        )
        levels[f"parametric_{label}"] = _level(
            risk_measures.parametric_var(mean, std, confidence),
            risk_measures.parametric_es(mean, std, confidence),
            equity,
            horizon_days,
        )
    return TailRiskRead.model_validate(levels)


def _level(
    var: float | None, es: float | None, equity: float, horizon_days: int
) -> TailRiskAtLevel:
    var, es = _finite(var), _finite(es)

    def scaled(x: float | None) -> float | None:
        return None if x is None else risk_measures.scale_to_horizon(x, horizon_days)

    return TailRiskAtLevel(
        one_day=_estimate(var, es, equity),
        horizon=_estimate(scaled(var), scaled(es), equity),
    )


def _estimate(var: float | None, es: float | None, equity: float) -> LossEstimate:
    def fraction(x: float | None) -> float | None:
        return None if x is None or equity <= 0 else x / equity

    return LossEstimate(
        var=_money(var), var_fraction=fraction(var), es=_money(es), es_fraction=fraction(es)
    )


def _tail_of_nothing(equity: float, horizon_days: int) -> TailRiskRead:
    level = _level(0.0, 0.0, equity, horizon_days)
    return TailRiskRead(
        historical_95=level, historical_99=level, parametric_95=level, parametric_99=level
    )


def _tail_unknown() -> TailRiskRead:
    unknown = LossEstimate(var=None, var_fraction=None, es=None, es_fraction=None)
    level = TailRiskAtLevel(one_day=unknown, horizon=unknown)
    return TailRiskRead(
        historical_95=level, historical_99=level, parametric_95=level, parametric_99=level
    )


def _correlation(scenarios: Scenarios | None) -> CorrelationRead:
    if scenarios is None:
        return CorrelationRead(symbols=[], matrix=[])
    matrix = risk_measures.correlation_matrix(scenarios.returns)
    return CorrelationRead(
        symbols=[h.symbol for h in scenarios.holdings],
        matrix=[[_finite(float(x)) for x in row] for row in matrix],
    )


class _PositionFigures(NamedTuple):
    volatility: float | None = None
    standalone_var: Decimal | None = None
    component_var: Decimal | None = None
    component_es: Decimal | None = None


def _position_risks(
    holdings: Sequence[Holding], scenarios: Scenarios | None, equity: float, periods: int
) -> list[PositionRiskRead]:
    """Every holding's figures; those of a holding left out of the scenarios are None."""
    figures: dict[str, _PositionFigures] = {}
    if scenarios is not None:
        risks = risk_measures.position_risks(
            scenarios.returns, scenarios.values, POSITION_CONFIDENCE
        )
        for i, h in enumerate(scenarios.holdings):
            figures[h.symbol] = _PositionFigures(
                volatility=_finite(performance.volatility(scenarios.returns[:, i], periods)),
                standalone_var=_money(risks.standalone_var[i]) if risks else None,
                component_var=_money(risks.component_var[i]) if risks else None,
                component_es=_money(risks.component_es[i]) if risks else None,
            )
    result = []
    for h in holdings:
        known = figures.get(h.symbol, _PositionFigures())
        result.append(
            PositionRiskRead(
                symbol=h.symbol,
                asset_class=h.asset_class,
                quantity=h.quantity,
                value=h.value,
                weight=float(h.value) / equity if equity > 0 else None,
                volatility=known.volatility,
                standalone_var=known.standalone_var,
                component_var=known.component_var,
                component_es=known.component_es,
            )
        )
    return result


def _check_scope(account_id: uuid.UUID | None, combined: bool) -> None:
    if combined and account_id is not None:
        raise ValidationFailedError(
            "combined measures all the user's accounts: give no account_id",
            details={"account_id": str(account_id)},
        )


def _one_currency(accounts: Sequence[TradingAccount]) -> str:
    currencies = sorted({a.base_currency for a in accounts})
    if len(currencies) != 1:
        raise ValidationFailedError(
            "accounts in different currencies cannot be combined",
            details={"currencies": currencies},
        )
    return currencies[0]


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _money(x: float | np.float64 | None) -> Decimal | None:
    """A float amount as a Decimal of 8 places (repr: the shortest decimal that is it)."""
    value = _finite(None if x is None else float(x))
    if value is None:
        return None
    with localcontext(prec=_PRECISION):
        return Decimal(repr(value)).quantize(MONEY_QUANTUM)


def _ratio(x: float | None) -> Decimal | None:
    """A float estimate for a `Money` column (storage rounds to 18 places; 10 suffice)."""
    if x is None or not math.isfinite(x):
        return None
    with localcontext(prec=_PRECISION):
        return Decimal(repr(x)).quantize(RATIO_QUANTUM)
