"""Queries on account balances written by an order's ledger. Flush, never commit.

Every function here works on an account the caller already holds locked
(`accounts.lock_account` with the user's id, or `lock_account_by_id` for an id already
authorised), so none takes `user_id`: the account id is authorised.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from database.orm import AccountBalance


async def of_locked_account(session: AsyncSession, account_id: uuid.UUID) -> list[AccountBalance]:
    """The account's balances (any order), read after its row lock in a statement of
    their own. Two statements on purpose: under READ COMMITTED a statement that waited
    for the row lock sees the locked row as committed after the wait but every other
    row as of its start, so balances read in the same statement could predate the
    previous order. Read after the lock, they are current (every writer of balances
    takes the account lock first). Internal: `account_id` is locked by the caller."""
    query = (
        select(AccountBalance)
        .where(AccountBalance.account_id == account_id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(query)).scalars())


def add(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    asset: str,
    free: Decimal,
    locked: Decimal,
) -> AccountBalance:
    """A balance for an asset the account has never held; added, not flushed (its
    INSERT goes out with the transaction's next flush, see `flush`)."""
    row = AccountBalance(
        id=uuid.uuid4(),
        user_id=user_id,
        account_id=account_id,
        asset=asset,
        free=free,
        locked=locked,
    )
    session.add(row)
    return row


async def compare_and_set(
    session: AsyncSession,
    row: AccountBalance,
    *,
    free: Decimal,
    locked: Decimal,
    updated_at: datetime,
) -> int:
    """`UPDATE … SET free, locked WHERE id = row.id AND free = row.free AND locked =
    row.locked`: writes only if the row still holds what `row` read. Returns the rows
    changed: 1, or 0 when another writer got in between (then nothing changed). On 1,
    the ORM copy takes the new values as committed, so no later flush writes them
    again. Internal: by primary key, of a balance read under the account's lock."""
    result = await session.execute(
        update(AccountBalance)
        .where(
            AccountBalance.id == row.id,
            AccountBalance.free == row.free,
            AccountBalance.locked == row.locked,
        )
        .values(free=free, locked=locked, updated_at=updated_at)
        .execution_options(synchronize_session=False)
    )
    changed: int = result.rowcount  # type: ignore[attr-defined]
    if changed == 1:
        set_committed_value(row, "free", free)
        set_committed_value(row, "locked", locked)
    return changed


async def flush(session: AsyncSession) -> None:
    """Send everything the transaction added or changed (the order, its trades, the
    position, new balances, the account's totals) in one flush."""
    await session.flush()
