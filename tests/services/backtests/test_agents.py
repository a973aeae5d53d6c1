"""Agent backtests on the real services of each database: point-in-time gating (a
planted future candle reaches no context and no prompt before it closes), fills at the
next open with the taker fee, the ledger reconciled, the agent's risk limits honoured,
model answers kept (a re-run asks the provider nothing), and the cost estimate and its
ceiling. The market's clock is fixed; its backfilled history is the history."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.config import Settings
from core.exceptions import NotFoundError, ValidationFailedError
from database.orm.types import utcnow
from database.repositories import market_data as market_repo
from database.seeds.catalog import SIMULATED_EXCHANGE
from models.agent_backtests import AgentBacktestRead, AgentBacktestRequest
from models.agents import AgentCreate
from models.decisions import AgentContext
from models.risk import LimitCreate, LimitType
from services.container import Services
from services.paper_trading.matching import fee_for
from tests.factories import create_user
from tests.llm_server import Reply, ScriptedModel, serve
from tests.services.quiet import started_at

D = Decimal
CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
START = CLOCK - timedelta(hours=8)
FIVE = timedelta(minutes=5)
# Nowhere near BTC/USD's simulated price: if it is in a prompt, the candle leaked.
PLANTED = D("777777.77")
OPENAI = {"llm_provider": "openai", "llm_model": "gpt-4o-mini"}
BUY_ALL = {
    "reasoning": "All in.",
    "decision_type": "trade",
    "symbol": "BTC/USD",
    "side": "buy",
    "fraction_of_equity": "1",
    "order_type": "market",
    "confidence_score": "0.9",
}


@pytest.fixture
async def model() -> AsyncIterator[tuple[ScriptedModel, str]]:
    scripted = ScriptedModel(default=Reply(decision=BUY_ALL))
    async with serve(scripted) as url:
        yield scripted, url


def model_settings(
    make_settings: Callable[..., Settings], database_url: str, url: str, **agents: Any
) -> Settings:
    """The quiet services, the openai provider pointed at the scripted model."""
    return make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
        agents={"scheduler_enabled": False, **agents},
        risk={"monitor_enabled": False},
        llm={"openai_api_key": "sk-test", "openai_base_url": url},
    )


@pytest.fixture
async def model_services(
    make_settings: Callable[..., Settings],
    database_url: str,
    model: tuple[ScriptedModel, str],
) -> AsyncIterator[Services]:
    async with started_at(model_settings(make_settings, database_url, model[1]), CLOCK) as built:
        yield built


async def new_agent(services: Services, **fields: Any) -> tuple[uuid.UUID, uuid.UUID]:
    user = (await create_user(services.database.database)).id
    body = {
        "name": f"Bt {uuid.uuid4().hex[:6]}",
        "symbols": ["BTC/USD"],
        "llm_provider": "local",
        "paper_balance": "10000",
        "risk_tolerance": "0.9",
        "max_position_pct": "50",
        "personality": {"aggression": 0.9},
        **fields,
    }
    agent = await services.agents.create_agent(user, AgentCreate.model_validate(body))
    return user, agent.id


def request(**fields: Any) -> AgentBacktestRequest:
    body = {"start": START.isoformat(), "end": CLOCK.isoformat(), "every": "5m", **fields}
    return AgentBacktestRequest.model_validate(body)


async def plant(services: Services, open_time: datetime) -> None:
    async with services.database.database.transaction() as session:
        await market_repo.upsert_candles(
            session,
            [
                {
                    "exchange": SIMULATED_EXCHANGE,
                    "symbol": "BTC/USD",
                    "timeframe": "5m",
                    "open_time": open_time,
                    "close_time": open_time + FIVE,
                    "open": PLANTED,
                    "high": PLANTED,
                    "low": PLANTED,
                    "close": PLANTED,
                    "volume": D(1),
                    "trade_count": 1,
                    "created_at": utcnow(),
                }
            ],
        )


class TestPointInTime:
    async def test_no_context_before_a_candle_closes_contains_it(self, services: Services) -> None:
        user, agent = await new_agent(services)
        planted_at = CLOCK - timedelta(hours=1)
        await plant(services, planted_at)
        contexts: list[AgentContext] = []

        await services.agent_backtests.backtest(user, agent, request(), observe=contexts.append)

        before = [c for c in contexts if c.as_of < planted_at + FIVE]
        after = [c for c in contexts if c.as_of >= planted_at + FIVE]
        assert len(before) == 85  # START, +5m, ... up to the planted open itself
        assert after
        for context in before:
            assert str(PLANTED) not in context.model_dump_json()
            assert all(c.open_time + FIVE <= context.as_of for c in context.symbols[0].candles)
            assert context.symbols[0].ticker is not None
            assert context.symbols[0].ticker.last != PLANTED
        # Once closed it is seen: the planting reached the history the run read.
        assert all(c.symbols[0].candles[-1].close == PLANTED for c in after)

    async def test_no_prompt_before_a_candle_closes_contains_it(
        self, model_services: Services, model: tuple[ScriptedModel, str]
    ) -> None:
        scripted, _ = model
        services = model_services
        user, agent = await new_agent(services, llm_provider="openai", llm_model="gpt-4o-mini")
        planted_at = START + timedelta(minutes=30)
        await plant(services, planted_at)

        await services.agent_backtests.backtest(
            user, agent, request(end=(START + timedelta(hours=1)).isoformat())
        )

        prompts = [json.dumps(r["messages"]) for r in scripted.requests]
        assert len(prompts) == 12
        # Decisions at START, +5m ... +30m come before the planted candle closes.
        assert not any(str(PLANTED) in p for p in prompts[:7])
        assert all(str(PLANTED) in p for p in prompts[7:])


class TestFills:
    async def test_fill_at_the_next_open_with_the_taker_fee_and_the_ledger_reconciles(
        self, services: Services
    ) -> None:
        user, agent = await new_agent(services)

        read = await services.agent_backtests.backtest(user, agent, request())

        result = read.result
        assert result is not None
        assert result.decisions == 96
        assert result.fills, "the aggressive local agent should have traded"
        candles = await services.market_data.candles(
            "BTC/USD", timeframe="5m", start=START, end=CLOCK, limit=1000
        )
        opens = {c.open_time: c.open for c in candles}
        cash = D(10000)
        for fill in result.fills:
            assert fill.time == fill.decided_at  # 5m decisions on 5m candles: its open
            assert fill.price == opens[fill.time]
            assert fill.fee == fee_for(fill.quantity * fill.price, result.fee_bps["BTC/USD"])
            notional = fill.quantity * fill.price
            cash += -(notional + fill.fee) if fill.side.value == "buy" else notional - fill.fee
        assert result.final_cash == cash
        held = sum((p.quantity * p.mark_price for p in result.open_positions), D(0))
        assert result.final_equity == (cash + held).quantize(D("1e-16"))
        assert result.fees == sum((f.fee for f in result.fills), D(0))
        assert sum(result.actions.values()) == result.decisions
        assert result.model_calls.local == result.decisions
        assert result.model_calls.cost == 0

    async def test_results_compare_with_buy_and_hold(self, services: Services) -> None:
        user, agent = await new_agent(services)

        read = await services.agent_backtests.backtest(user, agent, request())

        result = read.result
        assert result is not None
        assert [b.symbol for b in result.buy_and_hold] == ["BTC/USD"]
        hold = result.buy_and_hold[0]
        assert hold.metrics.trades == 0
        assert hold.metrics.exposure is not None
        assert hold.metrics.exposure > 0.9
        assert result.metrics.trades == len(result.trades)
        assert result.equity_curve[0].equity == 10000.0
        assert result.equity_curve[-1].time == CLOCK


class TestRiskLimits:
    async def test_an_order_over_the_agents_limit_is_refused_and_never_fills(
        self, model_services: Services
    ) -> None:
        user, agent = await new_agent(
            model_services, llm_provider="openai", llm_model="gpt-4o-mini", max_position_pct="5"
        )

        read = await model_services.agent_backtests.backtest(
            user, agent, request(end=(START + timedelta(hours=1)).isoformat())
        )

        result = read.result
        assert result is not None
        assert result.actions == {"refused": 12}
        assert result.fills == []
        assert result.final_equity == D(10000)

    async def test_the_users_trading_limits_refuse_as_the_paper_exchange_would(
        self, services: Services
    ) -> None:
        user, agent = await new_agent(services)
        free = await services.agent_backtests.backtest(user, agent, request())
        assert free.result is not None
        assert free.result.fills, "the aggressive local agent trades without a limit"
        await services.risk.create_limit(
            user, LimitCreate(limit_type=LimitType.ORDER_NOTIONAL, limit_value=D(1))
        )

        limited = await services.agent_backtests.backtest(user, agent, request())

        assert limited.result is not None
        assert limited.result.fills == []
        assert limited.result.actions["refused"] > free.result.actions.get("refused", 0)
        assert limited.result.final_equity == D(10000)


class TestModelCache:
    async def test_a_rerun_asks_the_provider_nothing_and_gives_the_same_result(
        self, model_services: Services, model: tuple[ScriptedModel, str]
    ) -> None:
        scripted, _ = model
        user, agent = await new_agent(
            model_services, llm_provider="openai", llm_model="gpt-4o-mini"
        )
        body = request(end=(START + timedelta(hours=1)).isoformat())

        first = await model_services.agent_backtests.backtest(user, agent, body)
        asked = len(scripted.requests)
        second = await model_services.agent_backtests.backtest(user, agent, body)

        assert asked == 12
        assert len(scripted.requests) == asked
        assert first.result is not None
        assert second.result is not None
        assert first.result.model_calls.asked == 12
        assert first.result.model_calls.cost is not None
        assert first.result.model_calls.cost > 0
        assert second.result.model_calls.asked == 0
        assert second.result.model_calls.cached == 12
        assert second.result.model_calls.cost == 0
        assert _without_calls(first) == _without_calls(second)

    async def test_another_users_answers_are_not_read(
        self, model_services: Services, model: tuple[ScriptedModel, str]
    ) -> None:
        scripted, _ = model
        body = request(end=(START + timedelta(minutes=30)).isoformat())
        for _ in range(2):
            user, agent = await new_agent(
                model_services, name="Same", llm_provider="openai", llm_model="gpt-4o-mini"
            )
            await model_services.agent_backtests.backtest(user, agent, body)

        assert len(scripted.requests) == 12


def _without_calls(read: AgentBacktestRead) -> dict[str, Any]:
    assert read.result is not None
    return read.result.model_dump(mode="json", exclude={"model_calls"})


class TestEstimate:
    async def test_estimate_only_asks_nothing(
        self, model_services: Services, model: tuple[ScriptedModel, str]
    ) -> None:
        scripted, _ = model
        user, agent = await new_agent(
            model_services, llm_provider="openai", llm_model="gpt-4o-mini"
        )

        read = await model_services.agent_backtests.backtest(
            user, agent, request(estimate_only=True)
        )

        assert read.status == "estimated"
        assert read.result is None
        assert scripted.requests == []
        estimate = read.estimate
        assert estimate.decisions == 96
        assert estimate.free is False
        assert estimate.prompt_tokens_per_call > 500
        # gpt-4o-mini: 0.15 USD in, 0.60 out, per million tokens.
        per_call = (D(estimate.prompt_tokens_per_call) * D("0.15") + D(400) * D("0.60")) / 1_000_000
        assert estimate.estimated_cost == (per_call * 96).quantize(D("1e-6"), "ROUND_CEILING")

    async def test_the_local_provider_is_free(self, services: Services) -> None:
        user, agent = await new_agent(services)

        read = await services.agent_backtests.backtest(user, agent, request(estimate_only=True))

        assert read.estimate.free is True
        assert read.estimate.estimated_cost == 0

    async def test_a_cost_over_the_ceiling_is_refused_naming_both(
        self,
        make_settings: Callable[..., Settings],
        database_url: str,
        model: tuple[ScriptedModel, str],
    ) -> None:
        scripted, url = model
        settings = model_settings(make_settings, database_url, url, backtest_max_cost_usd="0.001")
        async with started_at(settings, CLOCK) as services:
            user, agent = await new_agent(services, **OPENAI)

            with pytest.raises(ValidationFailedError) as caught:
                await services.agent_backtests.backtest(user, agent, request())

        error = caught.value
        assert error.code == "backtest_cost_exceeded"
        assert error.details["max_cost"] == "0.001"
        assert D(error.details["estimated_cost"]) > D("0.001")
        assert "0.001 USD" in error.message
        assert scripted.requests == []


class TestBounds:
    async def test_more_decisions_than_the_limit_are_refused_naming_the_count(
        self, services: Services
    ) -> None:
        user, agent = await new_agent(services)

        with pytest.raises(ValidationFailedError) as caught:
            await services.agent_backtests.backtest(
                user, agent, request(start=(CLOCK - timedelta(days=30)).isoformat())
            )

        assert caught.value.code == "too_many_decisions"
        assert caught.value.details == {"decisions": 8640, "max_decisions": 5000}

    async def test_cash_off_the_grid_is_refused_naming_it(self, services: Services) -> None:
        user, agent = await new_agent(services)

        with pytest.raises(ValidationFailedError) as caught:
            await services.agent_backtests.backtest(
                user, agent, request(initial_cash="1000.000000001")
            )

        assert caught.value.details == {"field": "initial_cash"}

    async def test_decisions_more_often_than_the_candles_are_refused(
        self, services: Services
    ) -> None:
        user, agent = await new_agent(services)

        with pytest.raises(ValidationFailedError, match="more often than the 5m candles"):
            await services.agent_backtests.backtest(user, agent, request(every="1m"))

    async def test_a_symbol_the_agent_does_not_trade_is_refused(self, services: Services) -> None:
        user, agent = await new_agent(services)

        with pytest.raises(ValidationFailedError, match="not among the agent's symbols"):
            await services.agent_backtests.backtest(user, agent, request(symbols=["ETH/USD"]))

    async def test_another_users_agent_is_not_found(self, services: Services) -> None:
        _, agent = await new_agent(services)
        stranger = (await create_user(services.database.database)).id

        with pytest.raises(NotFoundError):
            await services.agent_backtests.backtest(stranger, agent, request())


class TestProgress:
    async def test_progress_is_reported_and_a_cancel_stops_between_decisions(
        self, services: Services
    ) -> None:
        user, agent = await new_agent(services)
        seen: list[tuple[int, int]] = []

        async def progress(done: int, total: int) -> None:
            seen.append((done, total))

        read = await services.agent_backtests.backtest(
            user,
            agent,
            request(),
            progress=progress,
            cancelled=lambda: len(seen) >= 10,
        )

        assert seen == [(i, 96) for i in range(1, 11)]
        assert read.status == "cancelled"
        assert read.result is not None
        assert read.result.decisions == 10
