"""Arbitrage, the seed's spread between two symbols: its signals on the spread's z-score,
the two series aligned on their open times, no look-ahead, both engines identical on
it, and a strategy of it created, backtested and read live on the real services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.exceptions import NotFoundError, ValidationFailedError
from models.strategies import BacktestRequest, StrategyCreate
from models.strategy_params import ArbitrageParams, kind_of, parse_parameters
from services.backtests.engine import BacktestConfig, CandleSeries, run_reference
from services.backtests.lookahead import check_lookahead
from services.backtests.signals import Ohlcv, Signals, aligned, signals_for
from services.backtests.vectorized import run_vectorized
from services.container import Services
from tests.factories import create_user

CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
D = Decimal


def pair(seed: int, length: int, *, dip_at: int | None = None) -> tuple[CandleSeries, Ohlcv]:
    """A reference random walk and a traded series that tracks it with noise (and, at
    `dip_at`, falls 5% below it for one candle)."""
    rng = np.random.default_rng(seed)
    reference = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, length)))
    gap = rng.normal(0, 0.002, length)
    if dip_at is not None:
        gap[dip_at] = -0.05
    close = reference * np.exp(gap)
    times = np.datetime64("2025-01-01T00:00") + np.arange(length) * np.timedelta64(60, "s")

    def candles(c: np.ndarray) -> CandleSeries:
        opened = np.concatenate(([c[0]], c[:-1]))
        high, low = np.maximum(opened, c) * 1.001, np.minimum(opened, c) * 0.999
        return CandleSeries.from_prices(times, opened, high, low, c, rng.uniform(1, 5, length))

    return candles(close), candles(reference).ohlcv()


class TestSignals:
    def test_a_dip_below_the_reference_is_bought_and_sold_back_at_the_mean(self) -> None:
        traded, reference = pair(7, 200, dip_at=150)
        params = ArbitrageParams(reference_symbol="ETH/USD", window=50, entry_z=3, exit_z=0)

        signals = signals_for(traded.ohlcv(), params, reference=reference)

        spread = np.log(traded.ohlcv().close) - np.log(reference.close)
        assert np.allclose(signals.indicators["spread"], spread)
        assert signals.indicators["z"][150] <= -3
        assert signals.position[150] == 1
        assert signals.position[149] == 0
        back = int(np.argmax(signals.indicators["z"][151:] >= 0)) + 151
        assert signals.position[back] == 0
        assert all(signals.position[150:back] == 1)

    def test_without_the_reference_it_refuses(self) -> None:
        traded, reference = pair(1, 50)
        params = ArbitrageParams(reference_symbol="ETH/USD")
        with pytest.raises(ValueError, match="reference"):
            signals_for(traded.ohlcv(), params)
        with pytest.raises(ValueError, match="reference"):
            signals_for(traded.ohlcv(), params, reference=reference.head(49))

    def test_aligned_keeps_the_open_times_both_have(self) -> None:
        mine = [(t, f"a{t}") for t in (1, 2, 3, 5, 6)]
        theirs = [(t, f"b{t}") for t in (2, 3, 4, 6, 7)]
        left, right = aligned(mine, theirs, key=lambda c: c[0])
        assert [c[0] for c in left] == [c[0] for c in right] == [2, 3, 6]
        assert [c[1] for c in right] == ["b2", "b3", "b6"]

    def test_its_parameters_are_checked_and_normalized(self) -> None:
        params = parse_parameters("arbitrage", {"reference_symbol": " eth-usd "})
        assert params == ArbitrageParams(reference_symbol="ETH/USD")
        assert kind_of(params) == "arbitrage"
        with pytest.raises(ValueError, match="exit_z"):
            parse_parameters("arbitrage", {"reference_symbol": "X/Y", "entry_z": 1, "exit_z": -2})


class TestOnTheContract:
    @settings(max_examples=60, deadline=None)
    @given(
        seed=st.integers(0, 2**32 - 1),
        length=st.integers(2, 250),
        window=st.integers(2, 40),
        entry=st.floats(0.3, 2.5),
    )
    def test_no_look_ahead_and_both_engines_identical(
        self, seed: int, length: int, window: int, entry: float
    ) -> None:
        traded, reference = pair(seed, length)
        params = ArbitrageParams(reference_symbol="R/USD", window=window, entry_z=entry)

        def compute(ohlcv: Ohlcv) -> Signals:
            return signals_for(ohlcv, params, reference=reference.head(len(ohlcv)))

        report = check_lookahead(compute, traded.ohlcv(), max_cut_points=None)
        assert report.findings == ()
        config = BacktestConfig(initial_cash=D(10_000), fee_bps=D(10), slippage_bps=D(1))
        wanted = compute(traded.ohlcv()).position
        fast, slow = run_vectorized(traded, wanted, config), run_reference(traded, wanted, config)
        assert fast.trades == slow.trades
        assert repr((fast.final_cash, fast.final_equity)) == repr(
            (slow.final_cash, slow.final_equity)
        )


async def arbitrage(services: Services, user: uuid.UUID, **parameters: Any) -> uuid.UUID:
    body = StrategyCreate.model_validate(
        {
            "name": f"arb-{uuid.uuid4().hex[:8]}",
            "strategy_type": "arbitrage",
            "parameters": {
                "reference_symbol": "eth-usd",
                "window": 30,
                "entry_z": 1.0,
                **parameters,
            },
            "symbols": ["BTC/USD"],
            "timeframe": "1m",
        }
    )
    return (await services.strategies.create_strategy(user, body)).id


class TestOnTheServices:
    async def test_a_strategy_is_stored_with_its_reference_as_the_market_names_it(
        self, services: Services
    ) -> None:
        user = (await create_user(services.database.database)).id
        strategy = await services.strategies.get_strategy(user, await arbitrage(services, user))
        assert strategy.parameters == {
            "reference_symbol": "ETH/USD",
            "window": 30,
            "entry_z": 1.0,
            "exit_z": 0.0,
        }
        with pytest.raises(ValidationFailedError) as caught:
            await arbitrage(services, user, reference_symbol="NOPE/USD")
        assert [e["field"] for e in caught.value.details["errors"]] == [
            "parameters.reference_symbol"
        ]

    async def test_a_backtest_reads_both_series(self, services: Services) -> None:
        user = (await create_user(services.database.database)).id
        strategy = await arbitrage(services, user)
        body = BacktestRequest.model_validate(
            {
                "symbol": "BTC/USD",
                "timeframe": "1m",
                "start": (CLOCK - timedelta(hours=20)).isoformat(),
            }
        )

        run = await services.strategies.backtest(user, strategy, body)

        assert run.strategy_type == "arbitrage"
        assert run.candles == 20 * 60
        assert run.trades, "a 1-sigma spread reverts often over 20 hours"
        with pytest.raises(ValidationFailedError, match="two symbols"):
            await services.strategies.backtest(
                user, strategy, body.model_copy(update={"symbol": "ETH/USD"})
            )
        with pytest.raises(NotFoundError):
            await services.strategies.backtest(
                user, strategy, body.model_copy(update={"symbol": "NOPE/USD"})
            )

    async def test_its_live_signal_is_read_on_both_closed_candles(self, services: Services) -> None:
        user = (await create_user(services.database.database)).id
        strategy = await arbitrage(services, user)
        await services.market_data.advance(61)
        await services.signals.settled()

        (signal,) = (await services.strategies.list_signals(user, strategy)).items

        assert signal.candle_open_time == CLOCK
        assert signal.metadata["strategy_type"] == "arbitrage"
        assert signal.metadata["indicators"]["spread"] is not None
