"""database/repositories/positions.py: the position a fill books into, locked."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from database.connection import Database
from database.orm import Position
from database.repositories import positions
from tests.database.repositories.row_locks import assert_holds_until_commit
from tests.factories import create_account, create_agent, create_position


async def test_lock_position_finds_the_accounts_position_in_the_symbol(db: Database) -> None:
    account = await create_account(db)
    other = await create_account(db, user_id=account.user_id)
    mine = await create_position(db, account=account, symbol="BTC/USD", quantity="2")
    await create_position(db, account=account, symbol="ETH/USD")
    await create_position(db, account=other, symbol="BTC/USD")
    async with db.transaction() as session:
        found = await positions.lock_position(session, account.id, "BTC/USD")
        assert found is not None
        assert found.id == mine.id
        assert found.quantity == 2
        assert await positions.lock_position(session, account.id, "SOL/USD") is None


async def test_add_empty_is_a_flat_position_written_at_the_flush(db: Database) -> None:
    agent = await create_agent(db)
    account = await create_account(db, user_id=agent.user_id, agent_id=agent.id)
    async with db.transaction() as session:
        position = positions.add_empty(
            session,
            user_id=account.user_id,
            account_id=account.id,
            agent_id=agent.id,
            symbol="BTC/USD",
        )
        await session.flush()
        assert await positions.lock_position(session, account.id, "BTC/USD") is position
    async with db.read() as session:
        row = (await session.execute(select(Position))).scalar_one()
    zero = Decimal(0)
    assert (row.quantity, row.cost_basis, row.avg_price, row.realized_pnl) == (zero,) * 4
    assert (row.user_id, row.agent_id) == (account.user_id, agent.id)


async def test_the_position_lock_holds_until_commit_on_postgresql(pg_db: Database) -> None:
    db = pg_db
    account = await create_account(db)
    await create_position(db, account=account)
    await assert_holds_until_commit(
        db,
        lambda s: positions.lock_position(s, account.id, "BTC/USD"),
        lambda s: positions.lock_position(s, account.id, "BTC/USD"),
    )
