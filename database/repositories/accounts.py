"""Queries on trading accounts and their balances. Flush, never commit."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import NotFoundError
from database.locking import for_update
from database.orm import AccountBalance, TradingAccount
from models.enums import AccountType

DEFAULT_ACCOUNT_NAME = "Paper"


async def find_account(
    session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID | None
) -> TradingAccount:
    """The user's account `account_id`, or the user's default account when it is None.

    Scoped to the user: another user's account is "not found", never "forbidden", so
    ids do not leak. Raises NotFoundError.
    """
    query = select(TradingAccount).where(TradingAccount.user_id == user_id)
    if account_id is None:
        query = query.where(TradingAccount.is_default.is_(True))
    else:
        query = query.where(TradingAccount.id == account_id)
    account = (await session.execute(query)).scalar_one_or_none()
    if account is None:
        what = "default account" if account_id is None else f"account {account_id}"
        raise NotFoundError(
            f"{what} not found",
            details={"account_id": str(account_id) if account_id else None},
        )
    return account


async def list_accounts(session: AsyncSession, user_id: uuid.UUID) -> list[TradingAccount]:
    query = (
        select(TradingAccount)
        .where(TradingAccount.user_id == user_id)
        .order_by(TradingAccount.is_default.desc(), TradingAccount.created_at)
    )
    return list((await session.execute(query)).scalars())


async def balances_of(session: AsyncSession, account_id: uuid.UUID) -> list[AccountBalance]:
    query = (
        select(AccountBalance)
        .where(AccountBalance.account_id == account_id)
        .order_by(AccountBalance.asset)
    )
    return list((await session.execute(query)).scalars())


async def ensure_default_account(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    exchange: str,
    base_currency: str,
    initial_balance: Decimal,
    maker_fee_bps: Decimal | None = None,
    taker_fee_bps: Decimal | None = None,
) -> tuple[TradingAccount, bool]:
    """The user's default paper account, created funded when missing. (account, created)"""
    query = select(TradingAccount).where(
        TradingAccount.user_id == user_id, TradingAccount.is_default.is_(True)
    )
    account = (await session.execute(query)).scalar_one_or_none()
    if account is not None:
        return account, False
    account = await create_paper_account(
        session,
        user_id,
        name=DEFAULT_ACCOUNT_NAME,
        exchange=exchange,
        base_currency=base_currency,
        initial_balance=initial_balance,
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
        is_default=True,
    )
    return account, True


async def create_paper_account(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    name: str,
    exchange: str,
    base_currency: str,
    initial_balance: Decimal,
    maker_fee_bps: Decimal | None = None,
    taker_fee_bps: Decimal | None = None,
    agent_id: uuid.UUID | None = None,
    is_default: bool = False,
) -> TradingAccount:
    """A paper account holding `initial_balance` of its base currency; fee rates given
    override the pairs' schedules (None: each pair's own)."""
    account = TradingAccount(
        id=uuid.uuid4(),
        user_id=user_id,
        agent_id=agent_id,
        account_name=name,
        account_type=AccountType.PAPER.value,
        exchange=exchange,
        base_currency=base_currency,
        initial_balance=initial_balance,
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
        is_default=is_default,
    )
    session.add(account)
    await session.flush()
    session.add(
        AccountBalance(
            user_id=user_id, account_id=account.id, asset=base_currency, free=initial_balance
        )
    )
    await session.flush()
    return account


def _lock_query(account_id: uuid.UUID) -> Select[Any]:
    # Select[Any]: locking.for_update's type variable is bound to a row tuple.
    # populate_existing: rows read earlier in this session (unlocked) are overwritten
    # with what the lock returns, the latest committed values.
    return (
        select(TradingAccount)
        .where(TradingAccount.id == account_id)
        .execution_options(populate_existing=True)
    )


async def lock_account(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID
) -> TradingAccount | None:
    """The user's account `account_id`, its row locked until the transaction ends
    (PostgreSQL; SQLite's write transaction holds the whole database). None when the
    user has no such account. Read its balances after this, in a second statement
    (`balances.of_locked_account`): see there why."""
    query = _lock_query(account_id).where(TradingAccount.user_id == user_id)
    account: TradingAccount | None = (
        await session.execute(for_update(session, query))
    ).scalar_one_or_none()
    return account


async def lock_account_by_id(session: AsyncSession, account_id: uuid.UUID) -> TradingAccount | None:
    """`lock_account` without the user filter. Internal: for an id already authorised
    (the account of an order the user owns, or of an open order the tick-driven fill
    path matched, which spans users)."""
    query = _lock_query(account_id)
    account: TradingAccount | None = (
        await session.execute(for_update(session, query))
    ).scalar_one_or_none()
    return account
