"""The look-ahead check on the real services of each database: a stored strategy over the
market's closed candles gives a clean report, and the refusals (another user's strategy,
an unknown symbol, a period too long or without candles) are the API's errors. The
market's clock is fixed, its backfilled day the history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.exceptions import NotFoundError, ValidationFailedError
from models.lookahead import LookaheadRead, LookaheadRequest
from models.strategies import MAX_BACKTEST_CANDLES, StrategyCreate
from services.backtests.lookahead import lookahead_check
from services.container import Services
from tests.factories import create_user

CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


async def strategy_of(services: Services, **fields: Any) -> tuple[uuid.UUID, uuid.UUID]:
    user = (await create_user(services.database.database)).id
    body = {"name": f"s-{uuid.uuid4().hex[:8]}", "strategy_type": "trend_following", **fields}
    created = await services.strategies.create_strategy(user, StrategyCreate.model_validate(body))
    return user, created.id


def period(**fields: Any) -> LookaheadRequest:
    return LookaheadRequest.model_validate(
        {
            "symbol": "BTC-USD",
            "timeframe": "1m",
            "start": (CLOCK - timedelta(hours=6)).isoformat(),
            **fields,
        }
    )


async def check(
    services: Services, user: uuid.UUID, strategy: uuid.UUID, request: LookaheadRequest
) -> LookaheadRead:
    return await lookahead_check(services.strategies, services.backtests, user, strategy, request)


class TestLookaheadCheck:
    async def test_a_built_in_strategy_is_clean_at_each_trade(self, services: Services) -> None:
        user, strategy = await strategy_of(
            services, parameters={"fast_window": 5, "slow_window": 20, "average": "ema"}
        )
        report = await check(services, user, strategy, period())
        assert report.symbol == "BTC/USD"
        assert report.candles == 360
        assert report.first_open == CLOCK - timedelta(hours=6)
        assert report.last_open == CLOCK - timedelta(minutes=1)
        assert report.position_changes > 0
        assert report.cut_points == report.position_changes
        assert not report.repainting
        assert (report.findings, report.findings_total, report.changed) == ([], 0, [])
        assert report.summary.startswith("No look-ahead found")
        assert report.parameters == {"fast_window": 5, "slow_window": 20, "average": "ema"}

    async def test_the_bound_limits_the_cut_points(self, services: Services) -> None:
        user, strategy = await strategy_of(
            services, parameters={"fast_window": 2, "slow_window": 5}
        )
        report = await check(services, user, strategy, period(max_cut_points=3))
        assert report.position_changes > 3
        assert report.cut_points == 3

    async def test_another_users_strategy_is_not_found(self, services: Services) -> None:
        _, strategy = await strategy_of(services)
        stranger = (await create_user(services.database.database)).id
        with pytest.raises(NotFoundError):
            await check(services, stranger, strategy, period())

    async def test_an_unknown_symbol_is_not_found(self, services: Services) -> None:
        user, strategy = await strategy_of(services)
        with pytest.raises(NotFoundError, match="symbol"):
            await check(services, user, strategy, period(symbol="NOPE-USD"))

    async def test_a_period_past_the_bound_is_refused_with_the_count(
        self, services: Services
    ) -> None:
        user, strategy = await strategy_of(services)
        long = period(start=(CLOCK - timedelta(days=365)).isoformat())
        with pytest.raises(ValidationFailedError) as refused:
            await check(services, user, strategy, long)
        assert refused.value.details["candles"] == 365 * 1440
        assert refused.value.details["max_candles"] == MAX_BACKTEST_CANDLES
        assert str(365 * 1440) in refused.value.message

    @pytest.mark.parametrize(
        "fields",
        [
            {"start": (CLOCK + timedelta(hours=1)).isoformat()},
            {"end": (CLOCK - timedelta(hours=7)).isoformat()},
        ],
    )
    async def test_a_period_without_candles_is_refused(
        self, services: Services, fields: dict[str, Any]
    ) -> None:
        user, strategy = await strategy_of(services)
        with pytest.raises(ValidationFailedError):
            await check(services, user, strategy, period(**fields))
