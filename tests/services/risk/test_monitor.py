"""The risk monitor on the real services (services/risk/monitor.py): a limit used 80%
alerts once (until acknowledged), a breach alerts, a kill_on_breach breach engages the
account's kill switch, every alert is pushed as a `risk_alert` event, and a fill is
re-evaluated by the loop on its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from core.config import Settings
from database.orm import Agent
from database.repositories import risk as risk_repo
from main_consolidated import create_app
from models.enums import AgentStatus, OrderStatus
from models.events import Event
from models.risk import AlertType, Severity
from models.ws_protocol import RiskAlertEvent, parse_server_message
from services.container import Services
from services.risk.keeper import MetricsKeeper
from tests.api.conftest import running_app
from tests.factories import create_account, create_agent
from tests.services.risk.conftest import SYMBOL, add_limit, at_mark, mark, new_account, order

D = Decimal


class Alerts:
    """The `risk_alert` events the bus delivers, as their data."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def __call__(self, event: Event) -> None:
        if event.type == "risk_alert":
            # Exactly what a WebSocket client receives, and what the protocol documents.
            parsed = parse_server_message(event.text)
            assert isinstance(parsed, RiskAlertEvent)
            self.seen.append(event.envelope()["data"])
            self.arrived.set()


async def hold(services: Services, user_id: uuid.UUID, value: Decimal) -> Decimal:
    """Buys about `value` of BTC at the mark; returns what the position is worth."""
    await at_mark(services)
    quantity = (value / mark(services)).quantize(D("0.00001"))
    placed = await services.paper_trading.place_order(user_id, order("buy", str(quantity)))
    assert placed.status == OrderStatus.FILLED
    return quantity * mark(services)


async def test_a_limit_used_past_80_percent_alerts_once_until_acknowledged(
    services: Services,
) -> None:
    alerts = Alerts()
    services.event_bus.subscribe(alerts)
    account = await new_account(services)
    held = await hold(services, account.user_id, D(850))
    limit = await add_limit(
        services,
        account.user_id,
        limit_type="position_size",
        limit_value=str((held / D("0.85")).quantize(D("0.01"))),
        symbol=SYMBOL,
    )
    # Creating it measured it: its value is written, and the alert raised.
    assert limit.current_value == held
    assert [a["alert_type"] for a in alerts.seen] == ["limit_approached"]
    assert alerts.seen[0]["severity"] == "medium"
    assert alerts.seen[0]["limit_id"] == str(limit.id)

    await services.risk.monitor.evaluate_account(account.user_id, account.id)
    page = await services.risk.alerts.list_alerts(account.user_id)
    assert page.total == 1  # the standing alert is not raised again
    await services.risk.alerts.acknowledge(account.user_id, [page.items[0].id])
    await services.risk.monitor.evaluate_account(account.user_id, account.id)
    active = await services.risk.alerts.list_alerts(account.user_id, acknowledged=False)
    assert active.total == 1
    assert active.items[0].id != page.items[0].id
    assert len(alerts.seen) == 2


async def test_a_kill_on_breach_limit_engages_the_account_switch(services: Services) -> None:
    alerts = Alerts()
    services.event_bus.subscribe(alerts)
    account = await new_account(services)
    db = services.database.database
    agent = await create_agent(db, user_id=account.user_id, status=AgentStatus.ACTIVE.value)
    agent_account = await create_account(db, user_id=account.user_id, agent_id=agent.id)
    await hold(services, account.user_id, D(2000))
    below = (mark(services) * D("0.9")).quantize(D("0.01"))
    rests = await services.paper_trading.place_order(
        account.user_id, order("buy", "0.001", order_type="limit", price=str(below))
    )
    await add_limit(
        services,
        account.user_id,
        limit_type="gross_exposure",
        limit_value="1000",
        account_id=str(account.id),
        kill_on_breach=True,
    )
    async with db.read() as session:
        (switch,) = await risk_repo.engaged_over(
            session, user_id=account.user_id, account_id=account.id
        )
        assert switch.engaged_by is None  # the monitor's
        assert switch.scope == "account"
        assert "gross_exposure" in switch.reason
        untouched = await session.get(Agent, agent.id)
        assert untouched is not None
        # The agent trades its own account, which the switch does not stop.
        assert untouched.status == AgentStatus.ACTIVE.value
    kinds = {(a["alert_type"], a["severity"]) for a in alerts.seen}
    assert kinds == {
        (AlertType.LIMIT_BREACHED.value, Severity.CRITICAL.value),
        (AlertType.KILL_SWITCH.value, Severity.CRITICAL.value),
    }
    cancelled = await services.paper_trading.get_order(account.user_id, rests.id)
    assert cancelled.status == OrderStatus.CANCELLED
    # A second round finds the switch engaged: no second switch.
    await services.risk.monitor.evaluate_account(account.user_id, account.id)
    listed = await services.risk.switches.list_switches(account.user_id, engaged_only=True)
    assert listed.count == 1
    assert agent_account.id not in {s.account_id for s in listed.items}


@pytest.fixture
async def monitored(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    """The monitor's loops on: a fill is re-evaluated at once, the schedule is far."""
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
        agents={"scheduler_enabled": False},
        risk={
            "after_fill_delay_seconds": 0,
            "monitor_interval_seconds": 3600,
            "metrics_interval_seconds": 3600,
        },
    )
    app = create_app(settings)
    async with running_app(app):
        yield app.state.services


async def test_the_loop_re_evaluates_an_account_after_its_fill(monitored: Services) -> None:
    services = monitored
    alerts = Alerts()
    services.event_bus.subscribe(alerts)
    stored = asyncio.Event()

    async def after_fill(_user: uuid.UUID, _account: uuid.UUID) -> None:
        stored.set()

    services.risk.monitor.after_fill.append(after_fill)
    account = await new_account(services)
    limit = await add_limit(
        services, account.user_id, limit_type="gross_exposure", limit_value="1000"
    )
    assert alerts.seen == []
    await hold(services, account.user_id, D(900))
    await asyncio.wait_for(alerts.arrived.wait(), timeout=30)
    assert [(a["alert_type"], a["limit_id"]) for a in alerts.seen] == [
        ("limit_approached", str(limit.id))
    ]
    # The same round then stores the account's metrics: the hooks run in order, so a
    # hook added after the metrics' says when they are stored.
    await asyncio.wait_for(stored.wait(), timeout=30)
    assert await services.risk.measurer.latest(account.user_id, account_id=account.id)
    fresh = await services.risk.get_limit(account.user_id, limit.id)
    assert fresh.current_value is not None
    assert fresh.current_value > D(800)


async def test_stored_metrics_raise_var_and_concentration_alerts(services: Services) -> None:
    alerts = Alerts()
    services.event_bus.subscribe(alerts)
    account = await new_account(services, cash="10000")
    await hold(services, account.user_id, D(9000))
    strict = services.settings.risk.model_copy(update={"var_alert_pct": D("0.01")})
    keeper = MetricsKeeper(services.database, services.risk.measurer, services.event_bus, strict)
    read = await keeper.store(account.user_id, account.id)
    (position,) = read.position_risks
    assert position.weight is not None
    assert position.weight > 0.85
    kinds = {(a["alert_type"], a["severity"]) for a in alerts.seen}
    assert kinds == {("var_breach", "high"), ("position_risk", "medium")}
    # The default threshold (10% of equity) is far above this account's one-day VaR.
    relaxed = MetricsKeeper(
        services.database, services.risk.measurer, services.event_bus, services.settings.risk
    )
    await services.risk.alerts.acknowledge(
        account.user_id,
        [a.id for a in (await services.risk.alerts.list_alerts(account.user_id)).items],
    )
    await relaxed.store(account.user_id, account.id)
    active = await services.risk.alerts.list_alerts(account.user_id, acknowledged=False)
    assert [a.alert_type for a in active.items] == [AlertType.POSITION_RISK]


async def test_a_metrics_round_stores_each_account_and_each_user(services: Services) -> None:
    account = await new_account(services)
    await hold(services, account.user_id, D(1000))
    await services.risk.keeper.round()
    own = await services.risk.measurer.latest(account.user_id, account_id=account.id)
    together = await services.risk.measurer.latest(account.user_id, account_id=None, combined=True)
    assert own is not None
    assert together is not None
    assert together.account_ids == [account.id]
    assert together.gross_exposure == own.gross_exposure


async def test_a_limit_on_all_accounts_shows_the_largest_measure(services: Services) -> None:
    first = await new_account(services)
    await create_account(services.database.database, user_id=first.user_id, cash="1000")
    held = await hold(services, first.user_id, D(1000))
    limit = await add_limit(
        services, first.user_id, limit_type="position_size", limit_value="50000"
    )
    # The empty second account is measured too; it must not hide the first's position.
    assert limit.current_value == held
    await services.risk.monitor.round()
    assert (await services.risk.get_limit(first.user_id, limit.id)).current_value == held
