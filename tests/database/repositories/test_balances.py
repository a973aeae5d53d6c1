"""database/repositories/balances.py: the reads under the account lock and the
compare-and-set writes the ledger relies on."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import inspect

from database.connection import Database
from database.orm.types import utcnow
from database.repositories import balances
from tests.factories import create_account

D = Decimal


async def _amounts(db: Database, account_id: uuid.UUID) -> dict[str, tuple[Decimal, Decimal]]:
    async with db.read() as session:
        rows = await balances.of_locked_account(session, account_id)
        return {row.asset: (row.free, row.locked) for row in rows}


async def test_of_locked_account_reads_only_that_accounts_balances(db: Database) -> None:
    account = await create_account(db, cash="1000", balances={"BTC": "0.5"})
    await create_account(db, user_id=account.user_id, cash="7", balances={"ETH": "3"})
    assert await _amounts(db, account.id) == {"USD": (D(1000), D(0)), "BTC": (D("0.5"), D(0))}


async def test_add_is_written_at_the_flush(db: Database) -> None:
    account = await create_account(db, cash="10")
    async with db.transaction() as session:
        row = balances.add(
            session,
            user_id=account.user_id,
            account_id=account.id,
            asset="BTC",
            free=D("0.25"),
            locked=D("0.75"),
        )
        assert inspect(row).pending
        await balances.flush(session)
        assert inspect(row).persistent
    assert (await _amounts(db, account.id))["BTC"] == (D("0.25"), D("0.75"))


async def test_compare_and_set_writes_when_the_row_is_as_read(db: Database) -> None:
    account = await create_account(db, cash="1000")
    async with db.transaction() as session:
        [row] = await balances.of_locked_account(session, account.id)
        changed = await balances.compare_and_set(
            session, row, free=D(900), locked=D(100), updated_at=utcnow()
        )
        assert changed == 1
        # The ORM copy holds the new values as committed: no second UPDATE at flush.
        assert (row.free, row.locked) == (D(900), D(100))
        assert not session.is_modified(row)
    assert await _amounts(db, account.id) == {"USD": (D(900), D(100))}


async def test_compare_and_set_changes_nothing_when_another_writer_got_in(
    db: Database,
) -> None:
    account = await create_account(db, cash="1000")
    async with db.read() as session:
        [stale] = await balances.of_locked_account(session, account.id)
    async with db.transaction() as session:
        [row] = await balances.of_locked_account(session, account.id)
        assert (
            await balances.compare_and_set(
                session, row, free=D(400), locked=D(0), updated_at=utcnow()
            )
            == 1
        )
    async with db.transaction() as session:
        changed = await balances.compare_and_set(
            session, stale, free=D(1), locked=D(999), updated_at=utcnow()
        )
        assert changed == 0
        assert (stale.free, stale.locked) == (D(1000), D(0))  # not marked as written
    assert await _amounts(db, account.id) == {"USD": (D(400), D(0))}
