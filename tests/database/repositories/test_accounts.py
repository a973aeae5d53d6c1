"""database/repositories/accounts.py: the account row lock every order takes first."""

from __future__ import annotations

import uuid
from decimal import Decimal

from database.connection import Database
from database.orm import TradingAccount
from database.repositories import accounts
from tests.database.repositories.row_locks import assert_holds_until_commit
from tests.factories import create_account, create_user


async def test_lock_account_is_scoped_to_the_user(db: Database) -> None:
    account = await create_account(db)
    other = await create_user(db)
    async with db.transaction() as session:
        mine = await accounts.lock_account(session, account.id, user_id=account.user_id)
        assert mine is not None
        assert mine.id == account.id
        assert await accounts.lock_account(session, account.id, user_id=other.id) is None
        assert await accounts.lock_account(session, uuid.uuid4(), user_id=account.user_id) is None


async def test_lock_account_by_id_finds_any_users_account(db: Database) -> None:
    account = await create_account(db)
    async with db.transaction() as session:
        found = await accounts.lock_account_by_id(session, account.id)
        assert found is not None
        assert found.user_id == account.user_id
        assert await accounts.lock_account_by_id(session, uuid.uuid4()) is None


async def test_the_lock_rereads_a_row_the_session_already_holds(pg_db: Database) -> None:
    """populate_existing: what the lock returns is the latest committed row, not the
    session's earlier (unlocked) copy. PostgreSQL only: on SQLite the write transaction
    excludes the concurrent writer this needs."""
    db = pg_db
    account = await create_account(db)
    async with db.transaction() as session:
        stale = await session.get(TradingAccount, account.id)
        assert stale is not None
        assert stale.realized_pnl == 0
        async with db.transaction() as other:
            row = await other.get(TradingAccount, account.id)
            assert row is not None
            row.realized_pnl = Decimal("12.5")
        locked = await accounts.lock_account(session, account.id, user_id=account.user_id)
        assert locked is stale
        assert locked.realized_pnl == Decimal("12.5")


async def test_the_account_lock_holds_until_commit_on_postgresql(pg_db: Database) -> None:
    db = pg_db
    account = await create_account(db)
    await assert_holds_until_commit(
        db,
        lambda s: accounts.lock_account(s, account.id, user_id=account.user_id),
        lambda s: accounts.lock_account_by_id(s, account.id),
    )
