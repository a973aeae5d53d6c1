"""Balances, positions and fills of one account, written inside the order's transaction.

The caller holds the account (row lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite).
Balance moves are applied to the `Book` in memory, each checked at once (nothing goes
below zero), and `write_balances` stores them at the end of the order: one write per
asset however many fills there were. Every write is a compare-and-set on the values
read under the lock (`UPDATE … WHERE id = :id AND free = :read_free AND locked =
:read_locked`): if any other writer got in between, zero rows change and the whole
order is retried or refused, never half-applied. Amounts are compared in Python
(SQLite stores money as text, see database/orm/types.py), and the equality guard
holds on both databases because the stored text is canonical.

Accounting, average cost, fees kept apart:
- a buy fill: cash -= notional + fee; base += quantity; cost_basis += notional.
- a sell fill: cash += notional - fee; base -= quantity; the share of cost removed is
  cost_basis * quantity / position quantity (exact when the position closes), and
  realized PnL = notional - that share.
So cash + Σ cost_basis = initial + realized PnL - fees holds exactly, for any rounding
of the removed share, and avg_price = cost_basis / quantity is for display.

Wins and losses are counted per reduction of a position (one order's sell fills booked
in one transaction: `count_reduction`), not per fill, and net of both fees: the sell
fees and the share of the buy fees (`positions.entry_fees`) the sold quantity carried.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import ConflictError, InsufficientFundsError, NotFoundError
from database.orm import AccountBalance, Position, Trade, TradingAccount
from database.orm.types import MONEY_SCALE, utcnow
from database.repositories import accounts as account_repo
from database.repositories import balances as balance_repo
from database.repositories import positions as position_repo
from database.repositories import trades as trade_repo
from models.enums import Liquidity, OrderSide
from services.paper_trading.matching import MONEY_CONTEXT, Fill

_ZERO = Decimal(0)
_STORAGE_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


class LedgerConflictError(ConflictError):
    """A balance changed under the transaction: retry the whole order."""


def stored(amount: Decimal) -> Decimal:
    """The amount as the database keeps it (18 decimals), so what we compute is what we
    store, and the ledger sums what it wrote."""
    return amount.quantize(_STORAGE_QUANTUM, rounding=ROUND_HALF_EVEN, context=MONEY_CONTEXT)


@dataclass(slots=True)
class _Balance:
    """One asset's amounts: as read under the lock (`row`, None when the account has
    never held it) and as this transaction leaves them."""

    row: AccountBalance | None
    free: Decimal
    locked: Decimal

    @property
    def changed(self) -> bool:
        if self.row is None:
            return bool(self.free or self.locked)
        return self.free != self.row.free or self.locked != self.row.locked


@dataclass(slots=True)
class Book:
    """An account's balances by asset, as read under the account's lock and moved by
    this transaction (not yet written: see `write_balances`)."""

    account: TradingAccount
    balances: dict[str, _Balance] = field(default_factory=dict)

    @classmethod
    def of(cls, account: TradingAccount, rows: Iterable[AccountBalance]) -> Book:
        return cls(account, {row.asset: _Balance(row, row.free, row.locked) for row in rows})

    def free(self, asset: str) -> Decimal:
        balance = self.balances.get(asset)
        return balance.free if balance is not None else _ZERO

    def locked(self, asset: str) -> Decimal:
        balance = self.balances.get(asset)
        return balance.locked if balance is not None else _ZERO


async def lock_account(session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID) -> Book:
    """The user's account `account_id` and its balances, locked for this transaction on
    PostgreSQL. Another user's account is "not found" (NotFoundError), ids never leak."""
    book = await _locked_book(session, account_id, user_id)
    if book is None:
        raise NotFoundError(
            f"account {account_id} not found", details={"account_id": str(account_id)}
        )
    return book


async def lock_book(session: AsyncSession, account_id: uuid.UUID) -> Book:
    book = await _locked_book(session, account_id, None)
    if book is None:
        raise NotFoundError(
            f"account {account_id} not found", details={"account_id": str(account_id)}
        )
    return book


async def _locked_book(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID | None
) -> Book | None:
    """The account row, locked, then its balances, in a second statement (see
    `balances.of_locked_account` for why)."""
    if user_id is not None:
        account = await account_repo.lock_account(session, account_id, user_id=user_id)
    else:
        account = await account_repo.lock_account_by_id(session, account_id)
    if account is None:
        return None
    return Book.of(account, await balance_repo.of_locked_account(session, account_id))


def change_balance(
    book: Book,
    asset: str,
    *,
    free: Decimal = _ZERO,
    locked: Decimal = _ZERO,
) -> None:
    """Add `free` and `locked` (either may be negative) to the asset's balance in the
    book; refuses to take either below zero (InsufficientFundsError, naming what was
    there). Stored by `write_balances`."""
    with localcontext(MONEY_CONTEXT):
        old_free, old_locked = book.free(asset), book.locked(asset)
        new_free, new_locked = stored(old_free + free), stored(old_locked + locked)
    if new_free < 0:
        raise InsufficientFundsError(
            f"needs {-free} {asset}, {old_free} free",
            details={"asset": asset, "required": str(-free), "free": str(old_free)},
        )
    if new_locked < 0:
        # Only a bug could release more than an order locked: refuse, never go negative.
        raise LedgerConflictError(
            f"release of {-locked} {asset} exceeds the {old_locked} locked",
            details={"asset": asset},
        )
    balance = book.balances.get(asset)
    if balance is None:
        book.balances[asset] = _Balance(None, new_free, new_locked)
    else:
        balance.free, balance.locked = new_free, new_locked


async def write_balances(session: AsyncSession, book: Book) -> None:
    """Store what the transaction did to the balances: an insert for a new asset, a
    compare-and-set update on the values read under the lock for the others; then
    flush everything the transaction changed."""
    account = book.account
    now = utcnow()
    for asset, balance in book.balances.items():
        if not balance.changed:
            continue
        row = balance.row
        if row is None:
            balance.row = balance_repo.add(
                session,
                user_id=account.user_id,
                account_id=account.id,
                asset=asset,
                free=balance.free,
                locked=balance.locked,
            )
            continue
        changed = await balance_repo.compare_and_set(
            session, row, free=balance.free, locked=balance.locked, updated_at=now
        )
        if changed != 1:
            raise LedgerConflictError(
                f"the {asset} balance changed during the order; retry",
                details={"asset": asset},
            )
    await balance_repo.flush(session)


async def position_of(session: AsyncSession, account: TradingAccount, symbol: str) -> Position:
    """The account's position in `symbol`, locked; a new flat one when it has none."""
    position = await position_repo.lock_position(session, account.id, symbol)
    if position is None:
        position = position_repo.add_empty(
            session,
            user_id=account.user_id,
            account_id=account.id,
            agent_id=account.agent_id,
            symbol=symbol,
        )
    return position


@dataclass(frozen=True, slots=True)
class Booked:
    """What one fill did to the ledger: its trade, and for a sell its result net of its
    own fee and of the buy fees of the quantity it sold."""

    trade: Trade
    realized_pnl: Decimal
    net: Decimal = _ZERO


def count_reduction(account: TradingAccount, sells: Iterable[Booked]) -> None:
    """One reduction of a position: one trade, a win or a loss by its net result."""
    with localcontext(MONEY_CONTEXT):
        net = sum((booked.net for booked in sells), _ZERO)
    account.total_trades += 1
    if net > 0:
        account.winning_trades += 1
    elif net < 0:
        account.losing_trades += 1


def book_fill(
    session: AsyncSession,
    book: Book,
    position: Position,
    *,
    order_id: uuid.UUID,
    side: OrderSide,
    fill: Fill,
    base_asset: str,
    quote_asset: str,
    executed_at: datetime,
    cash_from_lock: Decimal = _ZERO,
    base_from_lock: Decimal = _ZERO,
) -> Booked:
    """Moves cash and the base asset for one fill, updates the position and the
    account's totals, and records the trade. `cash_from_lock` (buys) or
    `base_from_lock` (sells) is the part paid out of the order's locked funds."""
    account = book.account
    with localcontext(MONEY_CONTEXT):
        cost = fill.notional + fill.fee
        if side is OrderSide.BUY:
            change_balance(book, quote_asset, free=cash_from_lock - cost, locked=-cash_from_lock)
            change_balance(book, base_asset, free=fill.quantity)
            position.cost_basis = stored(position.cost_basis + fill.notional)
            position.entry_fees = position.entry_fees + fill.fee
            position.quantity = position.quantity + fill.quantity
            realized = net = _ZERO
        else:
            change_balance(
                book,
                base_asset,
                free=base_from_lock - fill.quantity,
                locked=-base_from_lock,
            )
            change_balance(book, quote_asset, free=fill.notional - fill.fee)
            if fill.quantity >= position.quantity:
                removed, entry_fees = position.cost_basis, position.entry_fees
            else:
                share = fill.quantity / position.quantity
                removed = stored(position.cost_basis * share)
                entry_fees = stored(position.entry_fees * share)
            realized = fill.notional - removed
            net = realized - fill.fee - entry_fees
            position.cost_basis = stored(position.cost_basis - removed)
            position.entry_fees = stored(position.entry_fees - entry_fees)
            position.quantity = position.quantity - fill.quantity
            position.realized_pnl = position.realized_pnl + realized
            account.realized_pnl = account.realized_pnl + realized
        position.avg_price = (
            stored(position.cost_basis / position.quantity) if position.quantity else _ZERO
        )
        position.last_trade_at = executed_at
        account.total_fees = account.total_fees + fill.fee
    trade = trade_repo.add(
        session,
        user_id=account.user_id,
        order_id=order_id,
        account_id=account.id,
        symbol=position.symbol,
        side=side.value,
        quantity=fill.quantity,
        price=fill.price,
        fee=fill.fee,
        fee_asset=quote_asset,
        liquidity=Liquidity(fill.liquidity).value,
        realized_pnl=realized,
        executed_at=executed_at,
    )
    return Booked(trade, realized, net)
