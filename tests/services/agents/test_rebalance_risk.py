"""A rebalance's orders pass a trade's pre-trade check, each against the account as the
rebalance's earlier orders leave it: the gate on hand-computed accounts, then an
agent's rebalance through the real services on each database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core.config import Settings
from database.orm import Order
from main_consolidated import create_app
from models.agents import AgentCreate
from models.decisions import Decision
from models.enums import ActionTaken, DecisionStatus, OrderSide, OrderStatus, OrderType
from models.portfolio import RebalanceOrderStatus
from models.risk import LimitCreate
from models.trading import OrderRead
from services.agents.planning import Inputs, Quote, RebalanceGate
from services.agents.risk import Holding, RiskLimits
from services.container import Services
from services.portfolio.rebalance import PlannedOrder
from tests.api.conftest import running_app

D = Decimal
BTC, ETH = "BTC/USD", "ETH/USD"


def inputs(*, cash: str, holdings: dict[str, Holding], max_open_positions: int = 5) -> Inputs:
    return Inputs(
        equity=D(10000),
        cash_free=D(cash),
        fee_bps=D(0),
        day_start_equity=None,
        holdings=holdings,
        quotes={BTC: Quote(D(99), D(101), D("0.001")), ETH: Quote(D(19), D(21), D("0.001"))},
        limits=RiskLimits(
            max_position_pct=D(50),
            max_order_pct=D(50),
            max_open_positions=max_open_positions,
            max_daily_loss_pct=None,
            min_confidence=D("0.5"),
        ),
    )


def filled(order: PlannedOrder) -> OrderRead:
    now = datetime.now(UTC)
    return OrderRead.model_validate(
        {
            "id": uuid.uuid4(),
            "account_id": uuid.uuid4(),
            **dict.fromkeys(
                ("agent_id", "client_order_id", "price", "stop_price", "reject_reason"), None
            ),
            **dict.fromkeys(("strategy", "reasoning", "triggered_at", "closed_at"), None),
            "symbol": order.symbol,
            "side": order.side,
            "order_type": OrderType.MARKET,
            "time_in_force": "GTC",
            "quantity": order.quantity,
            "status": OrderStatus.FILLED,
            "filled_quantity": order.quantity,
            "average_price": order.price,
            "fees": D(0),
            "locked_amount": D(0),
            "created_at": now,
            "updated_at": now,
            "fills": [],
        }
    )


class TestGate:
    def test_a_buy_funded_by_the_earlier_sell_passes_once_the_sell_is_placed(self) -> None:
        gate = RebalanceGate(
            inputs(cash="0", holdings={BTC: Holding(D(20), D(20), D(100))}), D("0.8")
        )
        sell = PlannedOrder(BTC, OrderSide.SELL, D(20), D(99), D(1980))
        buy = PlannedOrder(ETH, OrderSide.BUY, D(90), D(21), D(1890))

        assert gate.check(buy) is not None  # nothing sold yet: no cash for it
        assert gate.check(sell) is None
        gate.placed(sell, filled(sell))

        assert gate.check(buy) is None
        assert [v["approved"] for v in gate.verdicts] == [False, True, True]

    def test_each_new_position_counts_for_the_next_order(self) -> None:
        gate = RebalanceGate(inputs(cash="5000", holdings={}, max_open_positions=1), D("0.8"))
        btc = PlannedOrder(BTC, OrderSide.BUY, D(10), D(101), D(1010))
        eth = PlannedOrder(ETH, OrderSide.BUY, D(10), D(21), D(210))

        assert gate.check(btc) is None
        gate.placed(btc, filled(btc))
        reason = gate.check(eth)

        assert reason is not None
        assert "opens a position in ETH/USD: 2 positions after it; limit 1" in reason

    def test_a_dry_run_takes_approved_orders_as_planned(self) -> None:
        gate = RebalanceGate(inputs(cash="1100", holdings={}), D("0.8"))
        btc = PlannedOrder(BTC, OrderSide.BUY, D(10), D(101), D(1010))

        assert gate.check(btc) is None
        gate.placed(btc, None)

        assert gate.check(btc) is not None  # 90 of cash left


# --- the real services ------------------------------------------------------------


@pytest.fixture
def build(make_settings: Callable[..., Settings], database_url: str) -> Callable[..., Settings]:
    def settings(**agents: Any) -> Settings:
        return make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
            agents={"scheduler_enabled": False, **agents},
        )

    return settings


@pytest.fixture
async def services(build: Callable[..., Settings]) -> AsyncIterator[Services]:
    app = create_app(build(max_open_positions=1))
    async with running_app(app):
        yield app.state.services


def agent(name: str) -> AgentCreate:
    return AgentCreate.model_validate(
        {
            "name": name,
            "symbols": [BTC, ETH],
            "risk_tolerance": "0.5",
            "llm_provider": "local",
        }
    )


def rebalance(weights: dict[str, str]) -> Decision:
    return Decision.model_validate(
        {
            "decision_type": "rebalance",
            "target_weights": [{"symbol": s, "weight": w} for s, w in weights.items()],
            "reasoning": "spread out",
            "confidence_score": "0.9",
        }
    )


async def orders_of(services: Services, decision_id: uuid.UUID) -> list[Order]:
    async with services.database.database.read() as session:
        query = select(Order).where(Order.decision_id == decision_id)
        return list((await session.execute(query)).scalars())


class TestAgentRebalance:
    async def test_an_order_past_a_limit_is_refused_and_the_others_placed(
        self, services: Services
    ) -> None:
        # One open position allowed: the BTC buy opens it, the ETH buy would open a second.
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Spreader"))

        read = await services.agents.execute_decision(
            user, created.id, rebalance({BTC: "0.05", ETH: "0.05"})
        )

        assert read.status is DecisionStatus.EXECUTED, read.status_reason
        assert read.action_taken is ActionTaken.REBALANCE
        orders = read.result["rebalance"]["orders"]
        assert [(o["symbol"], o["status"], o["reason_code"]) for o in orders] == [
            (BTC, RebalanceOrderStatus.PLACED.value, None),
            (ETH, RebalanceOrderStatus.SKIPPED.value, "risk_refused"),
        ]
        assert "opens a position in ETH/USD" in orders[1]["reason"]
        assert read.status_reason is not None
        assert "buy ETH/USD refused by risk" in read.status_reason
        (placed,) = await orders_of(services, read.id)
        plan_id = uuid.UUID(read.result["rebalance"]["plan_id"])
        assert (placed.symbol, placed.agent_id, placed.decision_id) == (BTC, created.id, read.id)
        assert placed.client_order_id == f"rebalance-{plan_id.hex}-BTC-USD"

    async def test_resting_buys_count_against_the_rebalance(self, services: Services) -> None:
        # 0.6 BTC resting at 1000 is 600 of the 1000 a position may be (10% of 10000);
        # a rebalance to 8% of BTC would buy 800 more.
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Resting"))
        resting = Decision.model_validate(
            {
                "decision_type": "trade",
                "symbol": BTC,
                "side": "buy",
                "quantity": "0.6",
                "order_type": "limit",
                "limit_price": "1000",
                "reasoning": "bid low",
                "confidence_score": "0.9",
            }
        )
        await services.agents.execute_decision(user, created.id, resting)

        read = await services.agents.execute_decision(user, created.id, rebalance({BTC: "0.08"}))

        assert read.status is DecisionStatus.REJECTED
        assert read.action_taken is ActionTaken.NONE
        assert read.status_reason is not None
        assert "1 open buy order(s) of 600 USD still to fill" in read.status_reason
        assert await orders_of(services, read.id) == []

    async def test_a_rebalance_the_exchange_refuses_whole_did_nothing(
        self, services: Services
    ) -> None:
        # The user's order_notional limit refuses every order at the exchange: the
        # decision did nothing and says why, not "executed, placed 0 order(s)".
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Capped"))
        await services.risk.create_limit(
            user,
            LimitCreate.model_validate({"limit_type": "order_notional", "limit_value": "1"}),
        )

        read = await services.agents.execute_decision(user, created.id, rebalance({BTC: "0.05"}))

        assert read.status is DecisionStatus.REJECTED, read.status_reason
        assert read.action_taken is ActionTaken.NONE
        assert read.status_reason is not None
        assert "order_notional" in read.status_reason
        assert await orders_of(services, read.id) == []
