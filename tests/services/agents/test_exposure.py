"""Open orders in the risk check and in what the agent sees, and cancel decisions: the
pure rules on hand-computed accounts, then the real services on each database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from core.config import Settings
from database.orm import AgentDecision, TradingAccount
from main_consolidated import create_app
from models.agents import AgentCreate
from models.decisions import Decision
from models.enums import ActionTaken, DecisionStatus, OrderSide, OrderStatus, OrderType
from models.trading import OrderCreate
from services.agents.planning import Inputs, Quote, plan
from services.agents.risk import (
    CheckName,
    Holding,
    OpenOrder,
    OrderIntent,
    RiskLimits,
    RiskSnapshot,
    check_order,
)
from services.container import Services
from tests.api.conftest import running_app

D = Decimal
BTC, ETH = "BTC/USD", "ETH/USD"
PLACED = datetime(2026, 1, 5, 12, tzinfo=UTC)


def resting(
    symbol: str = BTC,
    *,
    side: OrderSide = OrderSide.BUY,
    remaining: str = "4",
    price: str = "1000",
    by_agent: bool = True,
) -> OpenOrder:
    return OpenOrder(
        id=str(uuid.uuid4()),
        symbol=symbol,
        side=side,
        order_type=OrderType.LIMIT,
        remaining=D(remaining),
        price=D(price),
        limit_price=D(price),
        stop_price=None,
        placed_at=PLACED,
        by_agent=by_agent,
    )


LIMITS = RiskLimits(
    max_position_pct=D(10),
    max_order_pct=D(10),
    max_open_positions=2,
    max_daily_loss_pct=None,
    min_confidence=D("0.5"),
)


def buy(quantity: str, symbol: str = BTC) -> OrderIntent:
    return OrderIntent(symbol, OrderSide.BUY, D(quantity), D(1000), D("0.8"), D(0))


def account(*orders: OpenOrder, holdings: dict[str, Holding] | None = None) -> RiskSnapshot:
    return RiskSnapshot(
        equity=D(100000),
        cash_free=D(50000),
        holdings=holdings or {},
        day_start_equity=None,
        open_orders=orders,
    )


def failed(snapshot: RiskSnapshot, intent: OrderIntent) -> dict[CheckName, str]:
    verdict = check_order(intent, snapshot, LIMITS)
    return {c.name: c.detail for c in verdict.checks if not c.passed}


class TestOpenOrdersInTheCheck:
    def test_resting_buys_count_toward_the_position(self) -> None:
        # 4 BTC resting at 1000 (4000) + this 7 (7000) = 11000: over 10% of 100000.
        problems = failed(account(resting(remaining="4")), buy("7"))
        assert problems.keys() == {CheckName.POSITION_SIZE}
        assert "1 open buy order(s) of 4000 USD still to fill" in problems[CheckName.POSITION_SIZE]
        assert failed(account(resting(remaining="3")), buy("7")) == {}

    def test_only_the_unfilled_remainder_counts(self) -> None:
        half_filled = resting(remaining="3")  # 6 ordered, 3 filled: the holding has those
        holdings = {BTC: Holding(D(3), D(3), D(1000))}
        # 3000 held + 3000 resting + 4000 = 10000: at the limit, not over it.
        assert failed(account(half_filled, holdings=holdings), buy("4")) == {}
        assert CheckName.POSITION_SIZE in failed(
            account(half_filled, holdings=holdings), buy("4.001")
        )

    def test_resting_sells_do_not_make_room(self) -> None:
        holdings = {BTC: Holding(D(0), D(8), D(1000))}
        sell = resting(side=OrderSide.SELL, remaining="8")
        assert CheckName.POSITION_SIZE in failed(account(sell, holdings=holdings), buy("3"))

    def test_an_open_buy_of_a_new_symbol_is_an_open_position(self) -> None:
        # ETH held, a BTC buy resting: two positions; a third symbol is one too many.
        holdings = {ETH: Holding(D(1), D(1), D(1000))}
        problems = failed(
            account(resting(BTC, remaining="1"), holdings=holdings), buy("1", "SOL/USD")
        )
        assert problems.keys() == {CheckName.OPEN_POSITIONS}
        assert (
            "3 positions after it (1 of them opened by open buy orders); limit 2"
            in (problems[CheckName.OPEN_POSITIONS])
        )

    def test_adding_to_a_symbol_with_a_resting_buy_opens_nothing(self) -> None:
        holdings = {ETH: Holding(D(1), D(1), D(1000))}
        snapshot = account(resting(BTC, remaining="1"), holdings=holdings)
        verdict = check_order(buy("1"), snapshot, LIMITS)
        assert CheckName.OPEN_POSITIONS not in {c.name for c in verdict.checks}
        assert verdict.approved


def inputs(*orders: OpenOrder) -> Inputs:
    return Inputs(
        equity=D(100000),
        cash_free=D(50000),
        fee_bps=D(0),
        day_start_equity=None,
        holdings={},
        quotes={BTC: Quote(D(999), D(1000), D("0.001"))},
        limits=LIMITS,
        open_orders=orders,
    )


class TestInputs:
    def test_open_orders_survive_the_record_so_a_replay_checks_the_same(self) -> None:
        recorded = inputs(resting(remaining="4"), resting(ETH, side=OrderSide.SELL))
        again = Inputs.from_record(recorded.to_record())
        assert again == recorded
        decision = Decision.model_validate(
            {
                "decision_type": "trade",
                "symbol": BTC,
                "side": "buy",
                "quantity": "7",
                "reasoning": "r",
                "confidence_score": "0.8",
            }
        )
        assert plan(decision, BTC, again).action == "refused"
        assert plan(decision, BTC, inputs()).action == "buy"

    def test_a_record_from_before_open_orders_reads_as_none(self) -> None:
        record = inputs().to_record()
        del record["open_orders"]
        assert Inputs.from_record(record).open_orders == ()


def cancel(*order_ids: object, **fields: Any) -> dict[str, Any]:
    return {
        "decision_type": "cancel",
        "order_ids": [str(i) for i in order_ids],
        "reasoning": "the bid moved away",
        "confidence_score": "0.7",
        **fields,
    }


class TestCancelDecision:
    def test_needs_order_ids_and_nothing_of_an_order(self) -> None:
        with pytest.raises(ValidationError, match="order_ids"):
            Decision.model_validate({**cancel(), "order_ids": None})
        with pytest.raises(ValidationError, match="remove side"):
            Decision.model_validate(cancel(uuid.uuid4(), side="buy"))
        twice = uuid.uuid4()
        with pytest.raises(ValidationError, match="twice"):
            Decision.model_validate(cancel(twice, twice))

    def test_order_ids_belong_to_a_cancel_only(self) -> None:
        with pytest.raises(ValidationError, match="cancel decision only"):
            Decision.model_validate(
                {
                    "decision_type": "hold",
                    "order_ids": [str(uuid.uuid4())],
                    "reasoning": "r",
                    "confidence_score": "0.5",
                }
            )

    def test_plans_only_the_agents_own_open_orders(self) -> None:
        own, theirs = resting(), resting(by_agent=False)
        unknown = uuid.uuid4()
        seen = inputs(own, theirs)

        planned = plan(Decision.model_validate(cancel(own.id)), None, seen)
        assert (planned.action, planned.order_ids) == ("cancel", (own.id,))

        refused = plan(Decision.model_validate(cancel(own.id, theirs.id, unknown)), None, seen)
        assert refused.action == "refused"
        assert refused.order_ids == ()
        assert f"order {theirs.id} was not placed by this agent" in refused.reason
        assert f"order {unknown} is not an open order of the agent's account" in refused.reason


# --- the real services ------------------------------------------------------------


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
        agents={"scheduler_enabled": False},
    )
    app = create_app(settings)
    async with running_app(app):
        yield app.state.services


def agent(name: str, **fields: Any) -> AgentCreate:
    base = {"name": name, "symbols": ["BTC/USD"], "risk_tolerance": "0.5", "llm_provider": "local"}
    return AgentCreate.model_validate({**base, **fields})


def limit_buy(quantity: str, price: str = "1000") -> Decision:
    """A buy resting far below the simulated BTC price: it never fills in the test."""
    return Decision.model_validate(
        {
            "decision_type": "trade",
            "symbol": BTC,
            "side": "buy",
            "quantity": quantity,
            "order_type": "limit",
            "limit_price": price,
            "reasoning": "bid low",
            "confidence_score": "0.9",
        }
    )


async def account_of(services: Services, agent_id: uuid.UUID) -> TradingAccount:
    async with services.database.database.read() as session:
        query = select(TradingAccount).where(TradingAccount.agent_id == agent_id)
        return (await session.execute(query)).scalar_one()


class TestRestingBuysOfAnAgent:
    async def test_resting_buys_within_the_limit_each_cannot_together_pass_it(
        self, services: Services
    ) -> None:
        # Equity 10000, max position 10% = 1000: 0.6 BTC at 1000 is 600, twice 1200.
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Stacker"))

        first = await services.agents.execute_decision(user, created.id, limit_buy("0.6"))
        second = await services.agents.execute_decision(user, created.id, limit_buy("0.6"))

        assert first.status is DecisionStatus.EXECUTED, first.status_reason
        assert first.result["order"]["status"] == OrderStatus.PENDING.value
        assert second.status is DecisionStatus.REJECTED
        assert second.status_reason is not None
        assert "1 open buy order(s) of 600 USD still to fill" in second.status_reason
        assert "over the 10% limit" in second.status_reason
        orders = await services.paper_activity.history(user, agent_id=created.id)
        assert orders.total == 1
        assert second.market_data["inputs"]["open_orders"][0]["id"] == first.result["order"]["id"]

    async def test_what_resting_buys_lock_is_not_cash_for_another(self, services: Services) -> None:
        # 9.5 BTC resting at 1000 locks 9500 + its fee reserve (20 bps): 481 stays free.
        # A 4.9% buy (about 490 with its fee) fits every size limit but not the cash.
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Allin", max_position_pct="100"))
        await services.agents.execute_decision(user, created.id, limit_buy("9.5"))
        market_buy = Decision.model_validate(
            {
                "decision_type": "trade",
                "symbol": BTC,
                "side": "buy",
                "fraction_of_equity": "0.049",
                "reasoning": "more",
                "confidence_score": "0.9",
            }
        )

        read = await services.agents.execute_decision(user, created.id, market_buy)

        assert read.status is DecisionStatus.REJECTED
        checks = {c["name"]: c for c in read.result["plan"]["risk"]["checks"]}
        assert [name for name, c in checks.items() if not c["passed"]] == ["cash"]
        assert "free cash 481 USD" in checks["cash"]["detail"]

    async def test_the_agent_sees_its_open_orders(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Watcher"))
        placed = await services.agents.execute_decision(user, created.id, limit_buy("0.05"))
        account = await account_of(services, created.id)
        manual = await services.paper_trading.place_order(
            user,
            OrderCreate(
                symbol=BTC,
                side=OrderSide.BUY,
                order_type=OrderType.LIMIT,
                quantity=D("0.02"),
                price=D(900),
                account_id=account.id,
            ),
        )

        seen = await services.agents._context.see(user, created.id)

        by_id = {o.id: o for o in seen.context.open_orders}
        mine = by_id[placed.result["order"]["id"]]
        assert (mine.symbol, mine.side, mine.order_type) == (BTC, OrderSide.BUY, OrderType.LIMIT)
        assert (mine.remaining_quantity, mine.limit_price, mine.stop_price) == (
            D("0.05"),
            D(1000),
            None,
        )
        assert mine.age_seconds >= 0
        assert mine.placed_by_agent
        assert not by_id[str(manual.id)].placed_by_agent
        # Both count as exposure: 50 + 18 of BTC still to fill.
        (btc,) = seen.context.terms
        assert btc.position_value == D(68) + _held_value(seen.context.portfolio, BTC)


def _held_value(portfolio: Any, symbol: str) -> Decimal:
    position = portfolio.position(symbol)
    return D(position.market_value) if position is not None else D(0)


class TestCancelByAnAgent:
    async def test_a_cancel_cancels_the_agents_orders_and_is_logged(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Canceller"))
        placed = await services.agents.execute_decision(user, created.id, limit_buy("0.05"))
        order_id = placed.result["order"]["id"]

        read = await services.agents.execute_decision(
            user, created.id, Decision.model_validate(cancel(order_id))
        )

        assert read.status is DecisionStatus.EXECUTED, read.status_reason
        assert read.action_taken is ActionTaken.CANCEL
        assert read.decision_type is not None
        assert read.decision_type.value == "cancel"
        assert [o["id"] for o in read.result["cancelled"]] == [order_id]
        assert read.result["cancelled"][0]["status"] == OrderStatus.CANCELLED.value
        order = await services.paper_trading.get_order(user, uuid.UUID(order_id))
        assert order.status is OrderStatus.CANCELLED
        # The order says who cancelled it, not "the user".
        assert order.reject_reason == f"cancelled by agent Canceller (decision {read.id})"
        async with services.database.database.read() as session:
            row = await session.get(AgentDecision, read.id)
        assert row is not None
        assert (row.decision_type, row.action_taken) == ("cancel", "cancel")

    async def test_an_order_the_agent_did_not_place_is_refused_with_the_reason(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Polite"))
        account = await account_of(services, created.id)
        manual = await services.paper_trading.place_order(
            user,
            OrderCreate(
                symbol=BTC,
                side=OrderSide.BUY,
                order_type=OrderType.LIMIT,
                quantity=D("0.02"),
                price=D(900),
                account_id=account.id,
            ),
        )

        read = await services.agents.execute_decision(
            user, created.id, Decision.model_validate(cancel(manual.id))
        )

        assert read.status is DecisionStatus.REJECTED
        assert read.action_taken is ActionTaken.NONE
        assert read.status_reason is not None
        assert f"order {manual.id} was not placed by this agent" in read.status_reason
        still = await services.paper_trading.get_order(user, manual.id)
        assert still.status is OrderStatus.PENDING

    async def test_an_order_closed_since_it_was_seen_is_reported_not_fatal(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Late"))
        first = await services.agents.execute_decision(user, created.id, limit_buy("0.05"))
        second = await services.agents.execute_decision(user, created.id, limit_buy("0.05"))
        ids = [first.result["order"]["id"], second.result["order"]["id"]]
        seen = await services.agents._context.see(user, created.id)
        await services.paper_trading.cancel_order(user, uuid.UUID(ids[0]))

        planned = plan(Decision.model_validate(cancel(*ids)), None, seen.inputs)
        verdict = await services.agents._decision_cycle._cancel(seen, planned, uuid.uuid4())

        assert verdict.status is DecisionStatus.EXECUTED
        assert verdict.action is ActionTaken.CANCEL
        assert [o["id"] for o in verdict.result["cancelled"]] == [ids[1]]
        assert [o["order_id"] for o in verdict.result["not_cancelled"]] == [ids[0]]
        assert verdict.reason is not None
        assert "cannot be cancelled" in verdict.reason
