"""Risk metrics of real accounts: the app's services on each database, holdings bought
with paper orders on the simulated market, the history its stored and backfilled daily
candles. The expected figures are computed here with utils.risk_measures from the
candles the market data service returns, aligned by day."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pytest

from core.exceptions import NotFoundError, ValidationFailedError
from database.orm import RiskMetric, TradingAccount
from database.repositories import risk as risk_repo
from models.risk_metrics import LossEstimate, RiskMetricsRead
from models.trading import OrderCreate
from services.container import Services
from services.risk.measure import RiskMeasurer
from tests.factories import create_account, create_position, create_user
from utils import performance, risk_measures

D = Decimal
BTC, ETH = "BTC/USD", "ETH/USD"
# Money figures are quantized to 8 places; the floats behind them agree far closer.
MONEY_TOLERANCE = 1e-6


@pytest.fixture
def now() -> datetime:
    # One instant for the whole test, so a run across midnight UTC cannot split the days.
    return datetime.now(UTC)


@pytest.fixture
def measurer(services: Services, now: datetime) -> RiskMeasurer:
    return RiskMeasurer(
        services.database, services.market_data, services.settings.risk, clock=lambda: now
    )


async def new_account(
    services: Services, *, user_id: uuid.UUID | None = None, default: bool = True
) -> TradingAccount:
    db = services.database.database
    owner = user_id if user_id is not None else (await create_user(db)).id
    return await create_account(db, user_id=owner, cash="100000", is_default=default)


async def buy(services: Services, account: TradingAccount, symbol: str, quantity: str) -> None:
    request = OrderCreate.model_validate(
        {"symbol": symbol, "side": "buy", "quantity": quantity, "account_id": str(account.id)}
    )
    order = await services.paper_trading.place_order(account.user_id, request)
    assert order.filled_quantity == D(quantity)


async def closes_by_day(services: Services, symbol: str, now: datetime) -> dict[int, float]:
    """The symbol's closed daily closes of the configured history, by day ordinal."""
    midnight = datetime.combine(now.date(), time(), UTC)
    start = midnight - timedelta(days=services.settings.risk.history_days + 1)
    candles = await services.market_data.candles(
        symbol, timeframe="1d", start=start, end=midnight - timedelta(microseconds=1), limit=1000
    )
    return {c.open_time.date().toordinal(): float(c.close) for c in candles}


async def expected_scenarios(
    services: Services, book: dict[str, Decimal], now: datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(returns [T, N], values [N], scenario PnL [T]) of the book's symbols, sorted."""
    symbols = sorted(book)
    series = [await closes_by_day(services, s, now) for s in symbols]
    days = sorted(set.intersection(*(set(s) for s in series)))
    prices = np.array([[s[d] for s in series] for d in days])
    returns = risk_measures.returns_from_prices(prices)
    values = []
    for symbol in symbols:
        mark = services.market_data.mark_price(symbol)
        assert mark is not None
        values.append(float(book[symbol] * mark))
    return returns, np.array(values), risk_measures.portfolio_pnl(returns, np.array(values))


def assert_money(actual: Decimal | None, expected: float | None) -> None:
    assert actual is not None
    assert expected is not None
    assert math.isclose(float(actual), expected, rel_tol=1e-9, abs_tol=MONEY_TOLERANCE)


def assert_estimate(estimate: LossEstimate, var: float, es: float, equity: float) -> None:
    assert_money(estimate.var, var)
    assert_money(estimate.es, es)
    assert estimate.var_fraction == pytest.approx(var / equity, rel=1e-12)
    assert estimate.es_fraction == pytest.approx(es / equity, rel=1e-12)


class TestMeasure:
    async def test_two_holdings_match_the_measures_on_their_closes(
        self, services: Services, measurer: RiskMeasurer, now: datetime
    ) -> None:
        account = await new_account(services)
        await buy(services, account, BTC, "0.3")
        await buy(services, account, ETH, "4")

        metrics = await measurer.measure(account.user_id, account_id=None, horizon_days=10)

        returns, values, pnl = await expected_scenarios(services, {BTC: D("0.3"), ETH: D(4)}, now)
        equity = float(metrics.equity)
        assert metrics.account_id == account.id
        assert metrics.equity == metrics.cash + sum(p.value for p in metrics.position_risks)
        assert metrics.history_days == returns.shape[0] == services.settings.risk.history_days
        assert metrics.history_end == now.date() - timedelta(days=1)
        for confidence, level in (
            (0.95, metrics.tail.historical_95),
            (0.99, metrics.tail.historical_99),
        ):
            var = risk_measures.historical_var(pnl, confidence)
            es = risk_measures.historical_es(pnl, confidence)
            assert var is not None
            assert es is not None
            assert_estimate(level.one_day, var, es, equity)
            assert_estimate(
                level.horizon,
                risk_measures.scale_to_horizon(var, 10),
                risk_measures.scale_to_horizon(es, 10),
                equity,
            )
        mean, std = float(np.mean(pnl)), float(np.std(pnl, ddof=1))
        for confidence, level in (
            (0.95, metrics.tail.parametric_95),
            (0.99, metrics.tail.parametric_99),
        ):
            var = risk_measures.parametric_var(mean, std, confidence)
            es = risk_measures.parametric_es(mean, std, confidence)
            assert_estimate(level.one_day, var, es, equity)

        portfolio = pnl / equity
        assert metrics.periods_per_year == 365
        assert metrics.volatility == pytest.approx(performance.volatility(portfolio, 365))
        assert metrics.sharpe_ratio == pytest.approx(performance.sharpe_ratio(portfolio, 365))
        assert metrics.sortino_ratio == pytest.approx(performance.sortino_ratio(portfolio, 365))
        assert metrics.max_drawdown == pytest.approx(
            risk_measures.max_drawdown_from_returns(portfolio)
        )
        btc = returns[:, 0]  # BTC/USD, the default benchmark, sorts first
        assert metrics.benchmark_symbol == BTC
        assert metrics.beta == pytest.approx(risk_measures.beta(portfolio, btc))
        assert metrics.concentration == pytest.approx(risk_measures.concentration(values))
        assert_money(metrics.gross_exposure, float(np.sum(values)))
        assert metrics.correlation.symbols == [BTC, ETH]
        matrix = np.array(metrics.correlation.matrix, dtype=np.float64)
        np.testing.assert_allclose(matrix, risk_measures.correlation_matrix(returns), rtol=1e-12)
        assert metrics.notes == []

    async def test_position_risks_split_the_portfolio_var(
        self, services: Services, measurer: RiskMeasurer, now: datetime
    ) -> None:
        account = await new_account(services)
        await buy(services, account, BTC, "0.3")
        await buy(services, account, ETH, "4")

        metrics = await measurer.measure(account.user_id, account_id=account.id)

        returns, values, _ = await expected_scenarios(services, {BTC: D("0.3"), ETH: D(4)}, now)
        expected = risk_measures.position_risks(returns, values, 0.95)
        assert expected is not None
        positions = metrics.position_risks
        assert [p.symbol for p in positions] == [BTC, ETH]
        assert [p.quantity for p in positions] == [D("0.3"), D(4)]
        for i, position in enumerate(positions):
            assert_money(position.standalone_var, float(expected.standalone_var[i]))
            assert_money(position.component_var, float(expected.component_var[i]))
            assert_money(position.component_es, float(expected.component_es[i]))
            assert position.volatility == pytest.approx(performance.volatility(returns[:, i], 365))
            assert position.weight == pytest.approx(float(position.value / metrics.equity))
        total = sum((p.component_var or D(0) for p in positions), D(0))
        assert_money(total, float(metrics.tail.historical_95.one_day.var or 0))

    async def test_an_account_without_holdings_risks_nothing(
        self, services: Services, measurer: RiskMeasurer
    ) -> None:
        account = await new_account(services)

        metrics = await measurer.measure(account.user_id, account_id=account.id)

        assert metrics.equity == D(100000)
        for level in (metrics.tail.historical_95, metrics.tail.parametric_99):
            assert level.one_day.var == level.horizon.var == D(0)
            assert level.one_day.es == D(0)
            assert level.one_day.var_fraction == 0
        assert metrics.gross_exposure == metrics.net_exposure == D(0)
        assert metrics.volatility is None
        assert metrics.sharpe_ratio is None
        assert metrics.beta is None
        assert metrics.concentration is None
        assert metrics.history_days == 0
        assert metrics.position_risks == []
        assert any("no holdings" in note for note in metrics.notes)

    async def test_a_holding_without_history_is_left_out_and_noted(
        self, services: Services, measurer: RiskMeasurer
    ) -> None:
        account = await new_account(services)
        await buy(services, account, BTC, "0.1")
        unknown = await create_position(
            services.database.database, account=account, symbol="ZZZ/USD", quantity="5"
        )

        metrics = await measurer.measure(account.user_id, account_id=account.id)

        unlisted = next(p for p in metrics.position_risks if p.symbol == "ZZZ/USD")
        assert unlisted.asset_class is None
        assert unlisted.value == unknown.cost_basis  # at cost: the market has no mark for it
        assert unlisted.standalone_var is None
        assert metrics.correlation.symbols == [BTC]
        assert metrics.tail.historical_95.one_day.var is not None
        assert any("ZZZ/USD" in note for note in metrics.notes)

    async def test_combined_sums_the_accounts_per_symbol(
        self, services: Services, measurer: RiskMeasurer, now: datetime
    ) -> None:
        first = await new_account(services)
        second = await new_account(services, user_id=first.user_id, default=False)
        await buy(services, first, BTC, "0.2")
        await buy(services, second, BTC, "0.1")
        await buy(services, second, ETH, "3")

        metrics = await measurer.measure(first.user_id, account_id=None, combined=True)

        _, _, pnl = await expected_scenarios(services, {BTC: D("0.3"), ETH: D(3)}, now)
        assert metrics.account_id is None
        assert set(metrics.account_ids) == {first.id, second.id}
        alone = [await measurer.measure(first.user_id, account_id=a.id) for a in (first, second)]
        assert metrics.equity == alone[0].equity + alone[1].equity
        assert [p.quantity for p in metrics.position_risks] == [D("0.3"), D(3)]
        assert_money(
            metrics.tail.historical_99.one_day.var, risk_measures.historical_var(pnl, 0.99)
        )

    async def test_another_users_account_is_not_found(
        self, services: Services, measurer: RiskMeasurer
    ) -> None:
        account = await new_account(services)
        stranger = await create_user(services.database.database)

        with pytest.raises(NotFoundError):
            await measurer.measure(stranger.id, account_id=account.id)
        with pytest.raises(NotFoundError):
            await measurer.latest(stranger.id, account_id=account.id)

    async def test_refuses_an_account_with_combined_and_a_bad_horizon(
        self, services: Services, measurer: RiskMeasurer
    ) -> None:
        account = await new_account(services)

        with pytest.raises(ValidationFailedError):
            await measurer.measure(account.user_id, account_id=account.id, combined=True)
        with pytest.raises(ValidationFailedError):
            await measurer.measure(account.user_id, account_id=account.id, horizon_days=0)

    async def test_reads_each_symbols_closes_once_a_day(
        self, services: Services, now: datetime
    ) -> None:
        clock = [now]
        measurer = RiskMeasurer(
            services.database,
            services.market_data,
            services.settings.risk,
            clock=lambda: clock[0],
        )
        account = await new_account(services)
        await buy(services, account, ETH, "2")

        await measurer.measure(account.user_id, account_id=account.id)
        assert measurer.history_reads == 2  # ETH and the benchmark
        await buy(services, account, ETH, "1")
        after_fill = await measurer.measure(account.user_id, account_id=account.id)
        assert measurer.history_reads == 2
        assert after_fill.position_risks[0].quantity == D(3)

        clock[0] = now + timedelta(days=1)
        await measurer.measure(account.user_id, account_id=account.id)
        assert measurer.history_reads == 4


class TestStoreAndLatest:
    async def test_latest_returns_what_store_measured(
        self, services: Services, measurer: RiskMeasurer
    ) -> None:
        account = await new_account(services)
        await buy(services, account, BTC, "0.2")
        assert await measurer.latest(account.user_id, account_id=account.id) is None

        stored = await measurer.store(account.user_id, account_id=None)

        latest = await measurer.latest(account.user_id, account_id=None)
        assert latest == stored
        assert isinstance(latest, RiskMetricsRead)
        async with services.database.database.read() as session:
            row = await risk_repo.latest_metric(
                session, user_id=account.user_id, account_id=account.id
            )
        assert isinstance(row, RiskMetric)
        assert row.value_at_risk == stored.tail.historical_95.one_day.var
        assert row.portfolio_risk == pytest.approx(D(repr(stored.volatility)), abs=D("1e-9"))
        assert list(row.position_risks) == [BTC]
        assert row.position_risks[BTC]["quantity"] == "0.2"

    async def test_combined_is_stored_apart_from_the_accounts(
        self, services: Services, measurer: RiskMeasurer
    ) -> None:
        account = await new_account(services)
        await buy(services, account, BTC, "0.2")

        combined = await measurer.store(account.user_id, account_id=None, combined=True)
        await measurer.store(account.user_id, account_id=account.id)

        latest = await measurer.latest(account.user_id, account_id=None, combined=True)
        assert latest == combined
        assert latest is not None
        assert latest.account_id is None
