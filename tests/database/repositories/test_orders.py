"""database/repositories/orders.py: what the paper exchange relies on, on both
databases: user scoping, the open orders across users, the client_order_id lookup,
the row lock of the fill path and cancels, and the filtered page."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from database.connection import Database
from database.orm import Order, TradingAccount
from database.orm.types import utcnow
from database.repositories import orders
from tests.database.repositories.row_locks import assert_holds_until_commit
from tests.factories import create_account, create_agent, create_order


async def _set_created(db: Database, order: Order, at: datetime) -> None:
    async with db.transaction() as session:
        row = await session.get(Order, order.id)
        assert row is not None
        row.created_at = at


async def test_open_orders_span_users_oldest_first(db: Database) -> None:
    now = utcnow()
    first_account = await create_account(db)
    second_account = await create_account(db)
    newer = await create_order(db, account=first_account, status="partial", filled_quantity="0.005")
    older = await create_order(db, account=second_account, status="pending")
    await create_order(db, account=first_account, status="filled", filled_quantity="0.01")
    await create_order(db, account=second_account, status="cancelled")
    await _set_created(db, newer, now)
    await _set_created(db, older, now - timedelta(minutes=1))
    async with db.read() as session:
        rows = await orders.open_orders(session)
    assert [row.id for row in rows] == [older.id, newer.id]


async def test_by_client_id_looks_in_that_account_only(db: Database) -> None:
    account = await create_account(db)
    other = await create_account(db, user_id=account.user_id)
    mine = await create_order(db, account=account, client_order_id="c-1")
    await create_order(db, account=other, client_order_id="c-2")
    async with db.read() as session:
        found = await orders.by_client_id(session, account.id, "c-1")
        assert found is not None
        assert found.id == mine.id
        assert await orders.by_client_id(session, account.id, "c-2") is None
        assert await orders.by_client_id(session, other.id, "c-1") is None


async def test_add_goes_out_at_the_flush_and_a_reused_client_id_fails_there(
    db: Database,
) -> None:
    account = await create_account(db)
    await create_order(db, account=account, client_order_id="dup")

    def new_order(client_order_id: str) -> Order:
        return Order(
            id=uuid.uuid4(),
            user_id=account.user_id,
            account_id=account.id,
            client_order_id=client_order_id,
            symbol="BTC/USD",
            side="buy",
            order_type="market",
            time_in_force="GTC",
            quantity=Decimal("1"),
            status="pending",
            filled_quantity=Decimal(0),
            fees=Decimal(0),
            locked_amount=Decimal(0),
        )

    async with db.transaction() as session:
        fresh = orders.add(session, new_order("new"))
        assert await orders.get_by_id(session, fresh.id) is fresh
    async with db.transaction() as session:
        orders.add(session, new_order("dup"))
        with pytest.raises(IntegrityError):
            await session.flush()
        await session.rollback()


async def test_find_and_lock_are_scoped_to_the_user(db: Database) -> None:
    account = await create_account(db)
    order = await create_order(db, account=account)
    stranger = uuid.uuid4()
    async with db.transaction() as session:
        assert (await orders.find(session, order.id, user_id=account.user_id)) is not None
        assert await orders.find(session, order.id, user_id=stranger) is None
        locked = await orders.lock(session, order.id, user_id=account.user_id)
        assert locked is not None
        assert locked.id == order.id
        assert await orders.lock(session, order.id, user_id=stranger) is None


async def test_lock_by_id_rereads_and_get_by_id_finds_any_users_order(db: Database) -> None:
    account = await create_account(db)
    order = await create_order(db, account=account)
    async with db.transaction() as session:
        seen = await orders.get_by_id(session, order.id)
        assert seen is not None
        assert seen.filled_quantity == 0
        locked = await orders.lock_by_id(session, order.id)
        assert locked is seen
        assert await orders.lock_by_id(session, uuid.uuid4()) is None
        assert await orders.get_by_id(session, uuid.uuid4()) is None


async def test_order_locks_hold_until_commit_on_postgresql(pg_db: Database) -> None:
    db = pg_db
    account = await create_account(db)
    order = await create_order(db, account=account)
    await assert_holds_until_commit(
        db,
        lambda s: orders.lock(s, order.id, user_id=account.user_id),
        lambda s: orders.lock_by_id(s, order.id),
    )


async def _history(db: Database) -> tuple[TradingAccount, list[Order]]:
    """Five orders of one user, created a minute apart (the first the oldest), and one
    order of another user."""
    agent = await create_agent(db)
    account = await create_account(db, user_id=agent.user_id)
    agent_account = await create_account(db, user_id=agent.user_id, agent_id=agent.id)
    made = [
        await create_order(db, account=account, status="pending"),
        await create_order(
            db, account=account, status="filled", filled_quantity="0.01", side="sell"
        ),
        await create_order(db, account=account, status="cancelled", symbol="ETH/USD"),
        await create_order(db, account=agent_account, status="partial", filled_quantity="0.005"),
        await create_order(db, account=account, status="rejected"),
    ]
    start = utcnow() - timedelta(hours=1)
    for i, order in enumerate(made):
        order.created_at = start + timedelta(minutes=i)
        await _set_created(db, order, order.created_at)
    await create_order(db, account=await create_account(db), status="pending")
    return account, made


async def test_page_is_the_users_orders_newest_first_with_the_total(db: Database) -> None:
    account, made = await _history(db)
    async with db.read() as session:
        total, rows = await orders.page(session, user_id=account.user_id, limit=2, offset=1)
    assert total == 5
    assert [r.id for r in rows] == [made[3].id, made[2].id]


async def test_page_filters(db: Database) -> None:
    account, made = await _history(db)
    user = account.user_id

    async def ids(**filters: object) -> tuple[int, list[uuid.UUID]]:
        async with db.read() as session:
            total, rows = await orders.page(session, user_id=user, **filters)  # type: ignore[arg-type]
        return total, [r.id for r in rows]

    assert await ids(status="open") == (2, [made[3].id, made[0].id])
    assert await ids(status="closed") == (3, [made[4].id, made[2].id, made[1].id])
    assert await ids(status="filled") == (1, [made[1].id])
    assert await ids(account_id=account.id, status="open") == (1, [made[0].id])
    assert await ids(symbol="ETH/USD") == (1, [made[2].id])
    assert await ids(side="sell") == (1, [made[1].id])
    assert await ids(agent_id=made[3].agent_id) == (1, [made[3].id])
    # start inclusive, end exclusive.
    assert await ids(start=made[3].created_at) == (2, [made[4].id, made[3].id])
    assert await ids(end=made[1].created_at) == (1, [made[0].id])
