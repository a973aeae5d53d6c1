"""The two backtest engines: trades worked out by hand, fees and slippage as documented,
the metrics equal to utils' on the equity curve, the fast path's results identical to
the reference's on random strategies, costs and series (property test), and the
service reading the market's closed candles page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import Settings
from core.exceptions import NotFoundError, ValidationFailedError
from models.strategy_params import (
    BreakoutParams,
    MeanReversionParams,
    RocMomentumParams,
    RsiMomentumParams,
    StrategyParams,
    TrendFollowingParams,
)
from services.backtests.engine import (
    BacktestConfig,
    BacktestResult,
    CandleSeries,
    InvalidBacktestError,
    OpenPosition,
    Trade,
    run_reference,
)
from services.backtests.service import BacktestRun, BacktestService
from services.backtests.signals import signals_for
from services.backtests.vectorized import run_vectorized
from services.container import Services
from tests.services.quiet import quiet_settings, started_at
from utils import performance

D = Decimal
DAY = np.timedelta64(1, "D")
T0 = datetime(2025, 1, 1, tzinfo=UTC)
ENGINES = [run_reference, run_vectorized]
Engine = Callable[[CandleSeries, list[int], BacktestConfig], BacktestResult]


def day(i: int) -> datetime:
    return T0 + timedelta(days=i)


def hand_series() -> CandleSeries:
    """Six daily candles (open, high, low, close)."""
    rows = [
        (100, 101, 99, 100),
        (100, 103, 99, 102),
        (102, 106, 101, 105),
        (105, 107, 103, 104),
        (104, 105, 100, 101),
        (101, 102, 98, 99),
    ]
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    times = np.datetime64("2025-01-01") + np.arange(len(rows)) * DAY
    return CandleSeries.from_prices(times, o, h, lo, c, np.ones(len(rows)))


# Buy on close 0, sell on close 2, buy on close 4; the sell on the last close has no
# candle to trade on.
WANTED = [1, 1, 0, 0, 1, 0]


def config(**fields: object) -> BacktestConfig:
    base: dict[str, object] = {
        "initial_cash": D(1000),
        "fee_bps": D(10),
        "quantity_step": D("0.001"),
    }
    return BacktestConfig(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ENGINES, ids=["reference", "vectorized"])
class TestHandWorkedRun:
    def test_trades_fill_at_the_next_open(self, engine: Engine) -> None:
        result = engine(hand_series(), WANTED, config())
        # Buy at open 1 (100): floor((1000 - 0.5e-8) / (0.001 * 100 * 1.001)) = 9990
        # steps, 9.99 for 999 + fee 0.999; cash 0.001. Sell at open 3 (105): 1048.95 less
        # fee 1.04895; PnL 1047.90105 - 999.999.
        assert result.trades == (
            Trade(
                entry_time=day(1),
                entry_price=D("100"),
                exit_time=day(3),
                exit_price=D("105"),
                quantity=D("9.99"),
                entry_fee=D("0.999"),
                exit_fee=D("1.04895"),
                pnl=D("47.90205"),
            ),
        )
        # Buy at open 5 (101) with 1047.90205: 10364 steps (10.364 x 0.101101 fits),
        # 1046.764 + fee 1.046764, cash 0.091286 left.
        assert result.open_position == OpenPosition(day(5), D(101), D("10.364"), D("1.046764"))
        assert result.final_cash == D("0.091286")
        assert result.final_equity == D("0.091286") + D("10.364") * 99

    def test_equity_is_marked_at_each_close(self, engine: Engine) -> None:
        result = engine(hand_series(), WANTED, config())
        assert result.equity.tolist() == pytest.approx(
            [1000, 0.001 + 9.99 * 102, 0.001 + 9.99 * 105, 1047.90205, 1047.90205, 1026.127286],
            rel=1e-15,
        )
        assert result.in_market.tolist() == [False, True, True, False, False, True]
        assert result.metrics.exposure == 0.5
        assert result.metrics.trades == 1

    def test_slippage_is_bps_of_the_price_plus_a_share_of_the_range(self, engine: Engine) -> None:
        result = engine(
            hand_series(), WANTED, config(slippage_bps=D(10), slippage_range_share=D("0.1"))
        )
        trade = result.trades[0]
        # Buy at open 1: 100 + 100 * 0.001 + 0.1 * (103 - 99) = 100.5.
        assert trade.entry_price == D("100.5")
        # Sell at open 3: 105 - (0.105 + 0.1 * (107 - 103)) = 104.495.
        assert trade.exit_price == D("104.495")
        assert trade.quantity == D("9.940")  # floor(999.999999995 / (0.001 * 100.5 * 1.001))
        assert trade.entry_fee == D("0.99897")
        assert trade.exit_fee == D("1.03868030")  # 9.94 * 104.495 = 1038.6803 at 10 bps

    def test_fill_at_the_next_close(self, engine: Engine) -> None:
        result = engine(hand_series(), WANTED, config(fill="next_close"))
        trade = result.trades[0]
        assert (trade.entry_time, trade.entry_price) == (day(1), D(102))
        assert (trade.exit_time, trade.exit_price) == (day(3), D(104))
        assert result.open_position is not None
        assert result.open_position.entry_price == D(99)
        # Held at the closes of candles 1, 2 and 5: the fills came before each mark.
        assert result.in_market.tolist() == [False, True, True, False, False, True]

    def test_slippage_rounds_up_against_the_trader(self, engine: Engine) -> None:
        # 1 bps of 0.00012345 is 1.2345e-8: the buyer pays 2e-8 more, the seller gets 2e-8 less.
        times = np.datetime64("2025-01-01") + np.arange(3) * DAY
        price = np.full(3, 0.00012345)
        series = CandleSeries.from_prices(times, price, price, price, price, np.ones(3))
        result = engine(series, [1, 0, 0], config(slippage_bps=D(1), fee_bps=D(0)))
        assert result.trades[0].entry_price == D("0.00012347")
        assert result.trades[0].exit_price == D("0.00012343")

    def test_a_sell_never_fills_below_one_unit(self, engine: Engine) -> None:
        # The whole 1-5 range as slippage would sell at 1 - 4: the price stops at 1e-8.
        times = np.datetime64("2025-01-01") + np.arange(3) * DAY
        ones = np.ones(3)
        series = CandleSeries.from_prices(times, ones, [1, 1, 5], ones, ones, ones)
        cfg = config(fee_bps=D(0), slippage_range_share=D(1))
        result = engine(series, [1, 0, 0], cfg)
        assert result.trades[0].exit_price == D("1e-8")

    def test_fee_rounds_half_up_and_the_cash_covers_it(self, engine: Engine) -> None:
        # 5 bps of 0.00005 is 2.5e-8, charged 3e-8: floor((0.00005003 - 0.5e-8) / 1.0005e-8)
        # is 5000 steps of 1e-8, and 0.00005 + 0.00000003 is the whole cash.
        times = np.datetime64("2025-01-01") + np.arange(3) * DAY
        ones = np.ones(3)
        series = CandleSeries.from_prices(times, ones, ones, ones, ones, ones)
        cash = D("0.00005003")
        cfg = config(initial_cash=cash, fee_bps=D(5), quantity_step=D("1e-8"))
        result = engine(series, [1, 1, 1], cfg)
        assert result.open_position == OpenPosition(day(1), D(1), D("0.00005"), D("3e-8"))
        assert result.final_cash == 0

    def test_a_buy_that_affords_nothing_does_nothing(self, engine: Engine) -> None:
        result = engine(hand_series(), WANTED, config(initial_cash=D("0.01")))
        assert result.trades == ()
        assert result.open_position is None
        assert result.final_equity == D("0.01")
        assert not result.in_market.any()

    def test_a_change_on_the_last_candle_is_not_traded(self, engine: Engine) -> None:
        result = engine(hand_series(), [0, 0, 0, 0, 0, 1], config())
        assert result.trades == ()
        assert result.open_position is None
        assert result.equity.tolist() == [1000.0] * 6

    def test_metrics_are_utils_on_the_equity_curve(self, engine: Engine) -> None:
        result = engine(hand_series(), WANTED, config())
        exact = [
            D(1000),
            D("0.001") + D("9.99") * 102,
            D("0.001") + D("9.99") * 105,
            D("1047.90205"),
            D("1047.90205"),
            D("0.091286") + D("10.364") * 99,
        ]
        times = [day(i) for i in range(6)]
        periods = performance.periods_per_year(times)
        assert periods == 365
        returns = performance.simple_returns(exact)
        metrics = result.metrics
        total = performance.total_return(exact)
        assert total is not None
        assert metrics.total_return == total
        assert metrics.cagr == pytest.approx(float(1 + total) ** (365 / 5) - 1, rel=1e-12)
        assert metrics.sharpe == pytest.approx(performance.sharpe_ratio(returns, 365), rel=1e-9)
        assert metrics.sortino == pytest.approx(performance.sortino_ratio(returns, 365), rel=1e-9)
        assert metrics.max_drawdown == pytest.approx(
            float(performance.max_drawdown(exact)), rel=1e-9
        )
        assert metrics.win_rate == performance.win_rate(1, 1) == 1
        assert metrics.profit_factor is None  # no losing trade
        assert metrics.exposure == 0.5


class TestInputs:
    def test_config_names_the_bad_field(self) -> None:
        with pytest.raises(InvalidBacktestError) as info:
            config(fee_bps=D(-1))
        assert info.value.field == "fee_bps"
        with pytest.raises(InvalidBacktestError, match="initial_cash"):
            config(initial_cash=D("0.000000001"))
        with pytest.raises(InvalidBacktestError, match="quantity_step"):
            config(quantity_step=D("1e-9"))

    def test_wanted_positions_are_checked(self) -> None:
        with pytest.raises(InvalidBacktestError, match="one position per candle"):
            run_vectorized(hand_series(), [1, 0], config())
        with pytest.raises(InvalidBacktestError, match=r"0 \(flat\) or 1"):
            run_reference(hand_series(), [0, 0, -1, 0, 0, 0], config())

    def test_candles_must_be_consistent(self) -> None:
        times = np.datetime64("2025-01-01") + np.arange(2) * DAY
        with pytest.raises(InvalidBacktestError, match="candle 1"):
            CandleSeries.from_prices(times, [1, 1], [1, 1], [1, 2], [1, 1], [0, 0])
        with pytest.raises(InvalidBacktestError, match="increasing"):
            CandleSeries.from_prices(times[::-1], [1, 1], [1, 1], [1, 1], [1, 1], [0, 0])


# ---- the fast path equals the reference ------------------------------------------------


def random_series(seed: int, length: int, level: float, tick: float = 1e-8) -> CandleSeries:
    """A random walk with flat stretches, its prices on the `tick` grid (coarse ticks make
    ties at the fee's and the quantity's rounding common)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.02, length) * (rng.random(length) > 0.3)
    close = level * np.exp(np.cumsum(steps))
    open_ = np.concatenate(([level], close[:-1])) * (1 + rng.normal(0, 0.002, length))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, length))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, length))
    times = np.datetime64("2025-01-01T00:00") + np.arange(length) * np.timedelta64(60, "s")
    o, h, lo, c = (np.maximum(np.round(p / tick) * tick, tick) for p in (open_, high, low, close))
    high, low = np.maximum.reduce([h, o, c]), np.minimum.reduce([lo, o, c])
    return CandleSeries.from_prices(times, o, high, low, c, rng.uniform(0, 5, length))


# (price level, tick): a cheap token to 1e-8, a coin at 1, BTC to the cent and the dollar.
MARKETS = [(0.0005, 1e-8), (1.0, 1e-8), (1.0, 0.01), (97_000.0, 0.01), (97_000.0, 1.0)]


windows = st.integers(min_value=1, max_value=30)


@st.composite
def any_params(draw: st.DrawFn) -> StrategyParams:
    kind = draw(st.sampled_from(["trend", "mean", "rsi", "roc", "breakout"]))
    if kind == "trend":
        fast = draw(windows)
        return TrendFollowingParams(
            fast_window=fast,
            slow_window=draw(st.integers(fast + 1, fast + 30)),
            average=draw(st.sampled_from(["sma", "ema"])),
        )
    if kind == "mean":
        entry = draw(st.floats(0.2, 2.5))
        return MeanReversionParams(
            window=draw(windows) + 1, entry_z=entry, exit_z=draw(st.floats(-entry + 0.1, 2))
        )
    if kind == "rsi":
        entry = draw(st.floats(30, 90))
        return RsiMomentumParams(
            window=draw(windows) + 1, entry=entry, exit=draw(st.floats(10, entry - 1))
        )
    if kind == "roc":
        return RocMomentumParams(
            indicator="roc", window=draw(windows), threshold=draw(st.floats(-0.03, 0.03))
        )
    return BreakoutParams(entry_window=draw(windows), exit_window=draw(windows))


def decimals(low: int, high: int, places: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low * 10**places, high * 10**places).map(lambda u: D(u).scaleb(-places))


@st.composite
def any_config(draw: st.DrawFn) -> BacktestConfig:
    return BacktestConfig(
        initial_cash=draw(decimals(1, 1_000_000, 8)),
        fee_bps=draw(st.sampled_from([D(0), D(5), D(10), D(25)]) | decimals(0, 100, 2)),
        slippage_bps=draw(decimals(0, 50, 3)),
        slippage_range_share=draw(decimals(0, 1, 4)),
        quantity_step=draw(st.sampled_from([D("1e-8"), D("0.00001"), D("0.01"), D(1)])),
        fill=draw(st.sampled_from(["next_open", "next_close"])),
    )


def assert_identical(fast: BacktestResult, reference: BacktestResult) -> None:
    assert fast.trades == reference.trades
    # The same digits, not only equal values: stored and shown alike.
    assert repr(fast.trades) == repr(reference.trades)
    assert repr(fast.open_position) == repr(reference.open_position)
    assert np.array_equal(fast.equity, reference.equity)
    assert np.array_equal(fast.in_market, reference.in_market)
    assert repr((fast.final_cash, fast.final_equity)) == repr(
        (reference.final_cash, reference.final_equity)
    )
    assert fast.metrics == reference.metrics


class TestFastPathEqualsReference:
    @settings(max_examples=500, deadline=None)
    @given(
        params=any_params(),
        cfg=any_config(),
        seed=st.integers(0, 2**32 - 1),
        length=st.integers(1, 250),
        market=st.sampled_from(MARKETS),
    )
    def test_on_every_built_in_strategy(
        self,
        params: StrategyParams,
        cfg: BacktestConfig,
        seed: int,
        length: int,
        market: tuple[float, float],
    ) -> None:
        series = random_series(seed, length, *market)
        wanted = signals_for(series.ohlcv(), params).position
        assert_identical(run_vectorized(series, wanted, cfg), run_reference(series, wanted, cfg))

    @settings(max_examples=300, deadline=None)
    @given(
        cfg=any_config(),
        seed=st.integers(0, 2**32 - 1),
        wanted=st.lists(st.integers(0, 1), min_size=1, max_size=120),
        market=st.sampled_from(MARKETS),
    )
    def test_on_any_wanted_positions(
        self, cfg: BacktestConfig, seed: int, wanted: list[int], market: tuple[float, float]
    ) -> None:
        series = random_series(seed, len(wanted), *market)
        assert_identical(run_vectorized(series, wanted, cfg), run_reference(series, wanted, cfg))


# ---- the service on the real market ----------------------------------------------------

START = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # the market's clock; 1,440 minutes before it
SYMBOL = "BTC/USD"
CROSSOVER = TrendFollowingParams(fast_window=5, slow_window=20)


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    async with started_at(quiet_settings(make_settings, database_url), START) as built:
        yield built


@pytest.fixture
def backtests(services: Services) -> BacktestService:
    return BacktestService(services.market_data)


async def run_backtest(
    backtests: BacktestService, params: StrategyParams, **checks: Any
) -> BacktestRun:
    """What a route does: the checks, then the run."""
    return await backtests.execute(backtests.prepare(params, **checks))


class TestBacktestService:
    async def test_reads_every_closed_candle_past_the_page_limit(
        self, backtests: BacktestService
    ) -> None:
        candles = await backtests.read_candles(
            SYMBOL, timeframe="1m", start=START - timedelta(minutes=1440)
        )
        # The backfilled day, in two pages; the candle open at the clock is not closed.
        assert len(candles) == 1440
        opens = [c.open_time for c in candles]
        assert opens == [START - timedelta(minutes=1440 - i) for i in range(1440)]

    async def test_both_engines_give_the_same_run(self, backtests: BacktestService) -> None:
        kwargs = {
            "symbol": "BTC-USD",
            "timeframe": "1m",
            "start": START - timedelta(minutes=1440),
            "initial_cash": D(10_000),
            "slippage_bps": D(1),
        }
        fast = await run_backtest(backtests, CROSSOVER, engine="vectorized", **kwargs)
        reference = await run_backtest(backtests, CROSSOVER, engine="reference", **kwargs)
        assert fast.symbol == SYMBOL
        assert len(fast.series) == 1440
        assert fast.config.fee_bps == 20  # the pair's taker rate
        assert fast.config.quantity_step == D("0.00001")  # the pair's step
        assert fast.result.trades
        assert_identical(fast.result, reference.result)
        # And what the service ran is the engine on those candles.
        direct = run_vectorized(fast.series, fast.signals.position, fast.config)
        assert_identical(fast.result, direct)

    async def test_end_bounds_the_period(self, backtests: BacktestService) -> None:
        run = await run_backtest(
            backtests,
            CROSSOVER,
            symbol=SYMBOL,
            timeframe="1h",
            start=START - timedelta(hours=10),
            end=START - timedelta(hours=2),
            initial_cash=D(1000),
        )
        assert len(run.series) == 8
        assert run.first_open == START - timedelta(hours=10)
        assert run.last_open == START - timedelta(hours=3)

    async def test_refuses_what_it_cannot_run(self, backtests: BacktestService) -> None:
        start = START - timedelta(hours=5)
        with pytest.raises(NotFoundError):
            await run_backtest(
                backtests,
                CROSSOVER,
                symbol="NOPE/USD",
                timeframe="1m",
                start=start,
                initial_cash=D(1),
            )
        with pytest.raises(ValidationFailedError) as info:
            await run_backtest(
                backtests, CROSSOVER, symbol=SYMBOL, timeframe="1m", start=start, initial_cash=D(-5)
            )
        assert info.value.details == {"field": "initial_cash"}
        with pytest.raises(ValidationFailedError, match="no closed"):
            await run_backtest(
                backtests, CROSSOVER, symbol=SYMBOL, timeframe="1d", start=START, initial_cash=D(1)
            )
        with pytest.raises(ValidationFailedError, match="timeframe"):
            await run_backtest(
                backtests, CROSSOVER, symbol=SYMBOL, timeframe="2m", start=start, initial_cash=D(1)
            )
