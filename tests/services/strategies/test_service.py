"""StrategyService on the real services of each database: the CRUD rules, parameters
checked against the type (errors naming the parameter), ownership, and a backtest
stored on its strategy. The market's clock is fixed, its backfilled day the history."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from core.exceptions import ConflictError, NotFoundError, ValidationFailedError
from models.strategies import (
    MAX_BACKTEST_CANDLES,
    MAX_EQUITY_POINTS,
    BacktestRequest,
    StrategyCreate,
    StrategyRead,
    StrategyUpdate,
)
from services.container import Services
from services.strategies.service import equity_indices
from tests.factories import create_strategy, create_user

D = Decimal
CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
SYMBOL = "BTC/USD"


async def new_user(services: Services) -> uuid.UUID:
    return (await create_user(services.database.database)).id


async def add(services: Services, user_id: uuid.UUID, **fields: Any) -> StrategyRead:
    body = {"name": f"s-{uuid.uuid4().hex[:8]}", "strategy_type": "trend_following", **fields}
    return await services.strategies.create_strategy(user_id, StrategyCreate.model_validate(body))


def fields_of(error: ValidationFailedError) -> list[str]:
    return [e["field"] for e in error.details["errors"]]


def backtest_body(**fields: Any) -> BacktestRequest:
    return BacktestRequest.model_validate(
        {
            "symbol": SYMBOL,
            "timeframe": "1m",
            "start": (CLOCK - timedelta(minutes=1440)).isoformat(),
            "initial_cash": "10000",
            "slippage_bps": "1",
            **fields,
        }
    )


class TestCreateStrategy:
    async def test_stores_the_parameters_with_their_defaults(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user, parameters={"fast_window": 5})
        assert created.parameters == {"fast_window": 5, "slow_window": 50, "average": "sma"}
        assert created.performance_metrics == {}
        assert await services.strategies.get_strategy(user, created.id) == created

    async def test_momentum_follows_its_indicator(self, services: Services) -> None:
        user = await new_user(services)
        roc = await add(services, user, strategy_type="momentum", parameters={"indicator": "roc"})
        assert roc.parameters == {"indicator": "roc", "window": 10, "threshold": 0.0}

    async def test_a_bad_parameter_is_named(self, services: Services) -> None:
        user = await new_user(services)
        with pytest.raises(ValidationFailedError) as info:
            await add(services, user, parameters={"fast_window": 60})
        assert fields_of(info.value) == ["parameters.slow_window"]
        with pytest.raises(ValidationFailedError) as info:
            await add(services, user, strategy_type="breakout", parameters={"entry_window": 0})
        assert fields_of(info.value) == ["parameters.entry_window"]
        with pytest.raises(ValidationFailedError) as info:
            await add(services, user, strategy_type="mean_reversion", parameters={"period": 3})
        assert fields_of(info.value) == ["parameters.period"]  # unknown, not dropped
        assert (await services.strategies.list_strategies(user)).count == 0

    def test_only_built_in_types_can_be_created(self) -> None:
        with pytest.raises(ValidationError, match="no built-in model") as info:
            StrategyCreate.model_validate({"name": "a", "strategy_type": "ml_prediction"})
        assert "trend_following, mean_reversion, momentum, breakout, arbitrage" in str(info.value)
        with pytest.raises(ValidationError, match="unknown strategy type 'grid'"):
            StrategyCreate.model_validate({"name": "a", "strategy_type": "grid"})

    async def test_a_name_is_unique_per_user(self, services: Services) -> None:
        user, other = await new_user(services), await new_user(services)
        await add(services, user, name="Cross")
        with pytest.raises(ConflictError) as info:
            await add(services, user, name="Cross")
        assert info.value.code == "name_taken"
        await add(services, other, name="Cross")


class TestUpdateStrategy:
    async def test_checks_new_parameters_against_the_type(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user)
        with pytest.raises(ValidationFailedError) as info:
            await services.strategies.update_strategy(
                user, created.id, StrategyUpdate(parameters={"average": "wma"})
            )
        assert fields_of(info.value) == ["parameters.average"]
        changed = await services.strategies.update_strategy(
            user, created.id, StrategyUpdate(parameters={"slow_window": 30})
        )
        assert changed.parameters == {"fast_window": 20, "slow_window": 30, "average": "sma"}

    async def test_a_new_type_checks_the_stored_parameters(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user)
        with pytest.raises(ValidationFailedError) as info:
            await services.strategies.update_strategy(
                user, created.id, StrategyUpdate.model_validate({"strategy_type": "breakout"})
            )
        assert "parameters.fast_window" in fields_of(info.value)
        changed = await services.strategies.update_strategy(
            user,
            created.id,
            StrategyUpdate.model_validate({"strategy_type": "breakout", "parameters": {}}),
        )
        assert changed.strategy_type == "breakout"
        assert changed.parameters == {"entry_window": 20, "exit_window": 10}

    async def test_only_the_fields_sent_change(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user, description="x", name="A")
        await add(services, user, name="B")
        with pytest.raises(ConflictError):
            await services.strategies.update_strategy(user, created.id, StrategyUpdate(name="B"))
        changed = await services.strategies.update_strategy(
            user,
            created.id,
            StrategyUpdate.model_validate({"description": None, "is_active": False}),
        )
        assert changed.description is None
        assert not changed.is_active
        assert changed.name == "A"
        assert changed.parameters == created.parameters
        active = await services.strategies.list_strategies(user, active=True)
        assert [s.name for s in active.items] == ["B"]


class TestOwnership:
    async def test_another_users_strategy_is_not_found(self, services: Services) -> None:
        owner, other = await new_user(services), await new_user(services)
        created = await add(services, owner)
        strategies = services.strategies
        with pytest.raises(NotFoundError):
            await strategies.get_strategy(other, created.id)
        with pytest.raises(NotFoundError):
            await strategies.update_strategy(other, created.id, StrategyUpdate(is_active=False))
        with pytest.raises(NotFoundError):
            await strategies.backtest(other, created.id, backtest_body())
        with pytest.raises(NotFoundError):
            await strategies.delete_strategy(other, created.id)
        assert (await strategies.list_strategies(other)).count == 0
        await strategies.delete_strategy(owner, created.id)
        with pytest.raises(NotFoundError):
            await strategies.get_strategy(owner, created.id)


class TestBacktest:
    async def test_the_run_is_stored_on_the_strategy(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user, parameters={"fast_window": 5, "slow_window": 20})
        run = await services.strategies.backtest(user, created.id, backtest_body())
        assert run.candles == 1440
        assert run.trades
        assert run.metrics.trades == len(run.trades)
        assert run.config.fee_bps == 20  # the pair's taker rate
        assert len(run.equity_curve) == MAX_EQUITY_POINTS
        assert run.equity_curve[0].time == run.first_open
        assert run.equity_curve[-1].time == run.last_open
        stored = await services.strategies.get_strategy(user, created.id)
        assert stored.performance_metrics == run.metrics.model_dump(mode="json")
        assert stored.backtest_results["metrics"] == stored.performance_metrics
        assert stored.backtest_results["final_equity"] == str(run.final_equity)
        assert stored.backtest_results["parameters"] == created.parameters
        assert stored.backtest_results["candles"] == 1440

    async def test_both_engines_store_the_same_metrics(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user, strategy_type="breakout", parameters={})
        fast = await services.strategies.backtest(user, created.id, backtest_body())
        slow = await services.strategies.backtest(
            user, created.id, backtest_body(engine="reference")
        )
        assert fast.trades == slow.trades
        assert fast.metrics == slow.metrics
        assert fast.equity_curve == slow.equity_curve

    async def test_a_period_past_the_candle_bound_is_refused_unread(
        self, services: Services
    ) -> None:
        user = await new_user(services)
        created = await add(services, user)
        start = CLOCK - timedelta(minutes=MAX_BACKTEST_CANDLES + 1)
        with pytest.raises(ValidationFailedError) as info:
            await services.strategies.backtest(
                user, created.id, backtest_body(start=start.isoformat())
            )
        assert info.value.details == {
            "candles": MAX_BACKTEST_CANDLES + 1,
            "max_candles": MAX_BACKTEST_CANDLES,
        }
        assert (await services.strategies.get_strategy(user, created.id)).backtest_results == {}

    async def test_a_period_that_closes_no_candle_is_refused(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user)
        for start, end in (
            (CLOCK, None),  # the candle open at the clock has not closed
            (datetime.min.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC, minute=1)),
        ):
            body = backtest_body(start=start.isoformat(), end=end and end.isoformat())
            with pytest.raises(ValidationFailedError, match="no closed"):
                await services.strategies.backtest(user, created.id, body)

    async def test_stored_parameters_that_do_not_run_are_named(self, services: Services) -> None:
        user = await new_user(services)
        # The seed's sample crossover: its parameters are not the built-in model's.
        seeded = await create_strategy(
            services.database.database,
            user_id=user,
            strategy_type="momentum",
            parameters={"short_period": 20, "long_period": 50},
        )
        with pytest.raises(ValidationFailedError, match="PATCH") as info:
            await services.strategies.backtest(user, seeded.id, backtest_body())
        assert "parameters.short_period" in fields_of(info.value)
        custom = await create_strategy(
            services.database.database, user_id=user, strategy_type="custom"
        )
        with pytest.raises(ValidationFailedError, match="built-in"):
            await services.strategies.backtest(user, custom.id, backtest_body())

    async def test_an_unknown_symbol_is_not_found(self, services: Services) -> None:
        user = await new_user(services)
        created = await add(services, user)
        with pytest.raises(NotFoundError):
            await services.strategies.backtest(user, created.id, backtest_body(symbol="NOPE/USD"))


def test_the_equity_curve_is_thinned_evenly() -> None:
    assert equity_indices(3) == [0, 1, 2]
    picked = equity_indices(100_000)
    assert len(picked) == MAX_EQUITY_POINTS
    assert picked[0] == 0
    assert picked[-1] == 99_999
    gaps = {b - a for a, b in itertools.pairwise(picked)}
    assert max(gaps) - min(gaps) <= 1
