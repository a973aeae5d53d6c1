"""The kill switch on the real services (services/risk/kill_switch.py): engaging it
cancels every open order of its scope, pauses its agents and (with flatten) sells every
position; from then on nothing trades, not even a resting order or a stop, except that
flattening; releasing it lets orders through again."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select

from core.exceptions import KillSwitchEngagedError, PermissionDeniedError
from database.orm import Agent, KillSwitch, Trade
from database.orm.types import utcnow
from database.repositories import risk as risk_repo
from models.enums import AgentStatus, OrderStatus
from models.risk import KillScope, KillSwitchEngage
from services.container import Services
from tests.factories import create_account, create_agent, create_user
from tests.services.paper_trading.ledger_check import assert_ledger_holds
from tests.services.risk.conftest import SYMBOL, at_mark, book_at, mark, new_account, order

D = Decimal


async def trades_of(services: Services, account_id: uuid.UUID) -> list[Trade]:
    async with services.database.database.read() as session:
        rows = await session.scalars(select(Trade).where(Trade.account_id == account_id))
        return list(rows)


async def test_engaging_cancels_pauses_flattens_and_then_nothing_trades(
    services: Services,
) -> None:
    account = await new_account(services)
    user_id = account.user_id
    db = services.database.database
    agent = await create_agent(db, user_id=user_id, status=AgentStatus.ACTIVE.value)
    agent_account = await create_account(db, user_id=user_id, agent_id=agent.id, cash="5000")
    await at_mark(services)
    price = mark(services)
    await services.paper_trading.place_order(user_id, order("buy", "0.5"))
    await services.paper_trading.place_order(
        user_id, order("buy", "0.01", account_id=str(agent_account.id))
    )
    below, above = (price * D("0.9")).quantize(D("0.01")), (price * D("1.1")).quantize(D("0.01"))
    resting = [
        await services.paper_trading.place_order(
            user_id, order("buy", "0.1", order_type="limit", price=str(below))
        ),
        await services.paper_trading.place_order(
            user_id, order("sell", "0.1", order_type="limit", price=str(above))
        ),
        await services.paper_trading.place_order(
            user_id, order("sell", "0.1", order_type="stop", stop_price=str(below))
        ),
    ]
    before = {a: len(await trades_of(services, a)) for a in (account.id, agent_account.id)}

    switch = await services.risk.switches.engage(
        user_id, KillSwitchEngage(scope=KillScope.USER, reason="drill", flatten=True)
    )

    assert sorted(switch.effects["orders_cancelled"]) == sorted(str(o.id) for o in resting)
    assert switch.effects["agents_paused"] == [str(agent.id)]
    flattened = {(f["account_id"], f["symbol"]) for f in switch.effects["positions_flattened"]}
    assert flattened == {(str(account.id), SYMBOL), (str(agent_account.id), SYMBOL)}
    for placed in resting:
        read = await services.paper_trading.get_order(user_id, placed.id)
        assert read.status == OrderStatus.CANCELLED
        assert read.reject_reason == "cancelled by the kill switch (drill)"
    async with db.read() as session:
        paused = await session.get(Agent, agent.id)
        assert paused is not None
        assert paused.status == AgentStatus.PAUSED.value
        assert paused.status_reason == "kill switch: drill"
    after_flatten = {a: len(await trades_of(services, a)) for a in (account.id, agent_account.id)}
    assert after_flatten == {a: n + 1 for a, n in before.items()}  # one flattening sell each

    # Nothing goes through now: buys, sells, closes, on either account.
    for request in (order("buy", "0.01"), order("sell", "0.01")):
        with pytest.raises(KillSwitchEngagedError, match="drill"):
            await services.paper_trading.place_order(user_id, request)
    with pytest.raises(KillSwitchEngagedError):
        await services.paper_trading.place_order(
            user_id, order("buy", "0.001", account_id=str(agent_account.id))
        )
    # A market step that would have crossed every cancelled order and fired the stop.
    await services.paper_trading.on_ticks(book_at(services, ask=below - 1, bid=above + 1))
    await services.paper_trading.on_ticks(book_at(services, ask=below - 2, bid=below - 3))
    assert {a: len(await trades_of(services, a)) for a in after_flatten} == after_flatten

    released = await services.risk.switches.release(user_id, switch.id)
    assert released.released_at is not None
    await at_mark(services)
    placed = await services.paper_trading.place_order(user_id, order("buy", "0.01"))
    assert placed.status == OrderStatus.FILLED
    await assert_ledger_holds(services, [account.id, agent_account.id])


async def test_a_halted_account_resting_order_does_not_fill(services: Services) -> None:
    """The fill path asks too: an order resting when a switch is stored (before the
    switch has cancelled it) does not fill, and fills once it is released."""
    account = await new_account(services)
    await at_mark(services)
    await services.paper_trading.place_order(account.user_id, order("buy", "0.2"))
    below = (mark(services) * D("0.9")).quantize(D("0.01"))
    rests = await services.paper_trading.place_order(
        account.user_id, order("buy", "0.1", order_type="limit", price=str(below))
    )
    stop = await services.paper_trading.place_order(
        account.user_id, order("sell", "0.2", order_type="stop", stop_price=str(below))
    )
    bought = len(await trades_of(services, account.id))
    async with services.database.database.transaction() as session:
        switch = await risk_repo.add_switch(
            session,
            KillSwitch(
                scope="account",
                user_id=account.user_id,
                account_id=account.id,
                reason="stored only",
                flatten=False,
                effects={},
                engaged_at=utcnow(),
            ),
        )
        # As engaging does, in the same transaction: the accounts re-read their rules.
        await risk_repo.bump_risk_version(session, user_id=None, account_id=account.id)
    await services.paper_trading.on_ticks(book_at(services, ask=below - 1, bid=below - 2))
    for placed in (rests, stop):
        still = await services.paper_trading.get_order(account.user_id, placed.id)
        assert still.status == OrderStatus.PENDING
        assert still.triggered_at is None
    assert len(await trades_of(services, account.id)) == bought

    await services.risk.switches.release(account.user_id, switch.id)
    await services.paper_trading.on_ticks(book_at(services, ask=below - 1, bid=below - 2))
    for placed in (rests, stop):
        filled = await services.paper_trading.get_order(account.user_id, placed.id)
        assert filled.status == OrderStatus.FILLED
    await assert_ledger_holds(services, [account.id])


async def test_the_global_switch_is_for_admins_and_stops_every_user(
    services: Services,
) -> None:
    db = services.database.database
    admin = await create_user(db, role="admin")
    other = await new_account(services)
    with pytest.raises(PermissionDeniedError):
        await services.risk.switches.engage(
            other.user_id, KillSwitchEngage(scope=KillScope.GLOBAL, reason="not mine")
        )
    switch = await services.risk.switches.engage(
        admin.id, KillSwitchEngage(scope=KillScope.GLOBAL, reason="market halt")
    )
    await at_mark(services)
    with pytest.raises(KillSwitchEngagedError, match="global"):
        await services.paper_trading.place_order(other.user_id, order("buy", "0.001"))
    listed = await services.risk.switches.list_switches(other.user_id, engaged_only=True)
    assert [s.id for s in listed.items] == [switch.id]
    with pytest.raises(PermissionDeniedError):
        await services.risk.switches.release(other.user_id, switch.id)
    await services.risk.switches.release(admin.id, switch.id)
    placed = await services.paper_trading.place_order(other.user_id, order("buy", "0.001"))
    assert placed.status == OrderStatus.FILLED
