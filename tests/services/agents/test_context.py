"""What an agent sees: the limits it is held to and what is left of them, each symbol's
fees and rules, and whether its last candle is still open. The real services on each
database, the market stepped by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from core.config import Settings
from main_consolidated import create_app
from models.agents import AgentCreate
from models.decisions import Decision
from services.container import Services
from services.llm.prompts import context_payload
from tests.api.conftest import running_app
from utils.candles import timeframe_delta

D = Decimal
BTC, ETH = "BTC/USD", "ETH/USD"


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
        agents={"scheduler_enabled": False, "max_open_positions": 3, "max_daily_loss_pct": "4"},
    )
    app = create_app(settings)
    async with running_app(app):
        yield app.state.services


def agent(name: str, **fields: Any) -> AgentCreate:
    base = {
        "name": name,
        "symbols": [BTC, ETH],
        "risk_tolerance": "0.5",
        "max_position_pct": "20",
        "llm_provider": "local",
    }
    return AgentCreate.model_validate({**base, **fields})


class TestLimitsSeen:
    async def test_the_agent_is_told_its_limits_and_what_is_left(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Told"))
        buy = Decision.model_validate(
            {
                "decision_type": "trade",
                "symbol": BTC,
                "side": "buy",
                "fraction_of_equity": "0.05",
                "reasoning": "in",
                "confidence_score": "0.9",
            }
        )
        bought = await services.agents.execute_decision(user, created.id, buy)
        assert bought.result["order"]["status"] == "filled", bought.status_reason

        seen = await services.agents._context.see(user, created.id)

        risk = seen.context.risk
        limits = seen.inputs.limits
        assert risk.min_confidence == limits.min_confidence == D("0.35")
        assert (risk.max_order_pct, risk.max_daily_loss_pct) == (D(20), D(4))
        assert (risk.max_open_positions, risk.open_positions, risk.open_positions_remaining) == (
            3,
            1,
            2,
        )
        equity = seen.inputs.equity
        assert risk.max_position_value == equity * D(20) / 100
        terms = {t.symbol: t for t in seen.context.terms}
        assert list(terms) == [BTC, ETH]
        held = seen.inputs.holdings[BTC]
        btc_value = held.quantity * held.mark_price
        assert terms[BTC].position_value == btc_value
        assert terms[BTC].position_room == risk.max_position_value - btc_value
        assert terms[ETH].position_room == risk.max_position_value
        account = seen.account
        for symbol, term in terms.items():
            rules = services.market_data.pair_rules(symbol)
            rates = services.portfolio.fees.rates(account, rules)
            assert (term.maker_fee_bps, term.taker_fee_bps) == (rates.maker_bps, rates.taker_bps)
            assert (term.quantity_step, term.price_tick) == (rules.step_size, rules.tick_size)
            assert (term.min_quantity, term.min_notional) == (
                rules.min_quantity,
                rules.min_notional,
            )
        # The fees are the pair's schedule (10/20 bps on the simulated crypto pairs).
        assert (terms[BTC].maker_fee_bps, terms[BTC].taker_fee_bps) == (D(10), D(20))
        told = context_payload(seen.context)
        assert told["risk"]["min_confidence"] == "0.35"
        assert told["terms"][0]["taker_fee_bps"] == "20"


class TestPartialCandle:
    async def test_the_candle_still_open_is_marked_and_told(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Careful"))
        await services.market_data.advance(3)

        seen = await services.agents._context.see(user, created.id)

        for symbol in seen.context.symbols:
            *closed, last = symbol.candles
            assert symbol.ticker is not None
            assert symbol.ticker.timestamp is not None
            # The latest tick falls inside the last candle: it has not closed.
            assert last.open_time <= symbol.ticker.timestamp
            assert symbol.ticker.timestamp < last.open_time + timeframe_delta(symbol.timeframe)
            assert last.partial
            assert not any(c.partial for c in closed)
        told = context_payload(seen.context)
        assert [s["candles"]["last_partial"] for s in told["symbols"]] == [True, True]
