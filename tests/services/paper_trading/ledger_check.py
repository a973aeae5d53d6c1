"""The paper exchange's books checked on what it holds, for any test that trades: the
accounting of services/paper_trading/ledger.py, locks that back exactly the open orders,
orders that agree with their trades, fees at the account's rates, and the market depth
that orders share.

    await assert_ledger_holds(services, [account.id])

`read_holdings` loads everything an account has in one read transaction; `snapshot`
turns that into plain values (every column of every row) so a test can assert that a
refused order left an account untouched (`differences` says what changed), and
`taker_book` is the book the exchange would hand the next taker, so it can assert the
same of the market's depth. `walk` and `without` are what a taker gets from a book and
what it leaves; `StepDepth` holds one market step's displayed book against the fills
of that step.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import inspect, select

from connectors.base import OrderBook
from database.orm import OPEN_ORDER_STATUSES, AccountBalance, Order, Position, Trade, TradingAccount
from models.enums import Liquidity, OrderSide, OrderStatus
from services.container import Services

ZERO = Decimal(0)
# What matching.py rounds a fee to (ROUND_HALF_UP): a fill's fee is its notional times
# its rate to within one quantum, whether the exchange rounds each fill on its own or
# prices it as the step in its order's cumulative fee (the difference of two roundings).
FEE_QUANTUM = Decimal("0.00000001")
_BPS = Decimal(10000)
_OPEN = frozenset(status.value for status in OPEN_ORDER_STATUSES)

Levels = tuple[tuple[Decimal, Decimal], ...]
Columns = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Holdings:
    """One account's rows, as one read transaction saw them."""

    account: TradingAccount
    balances: dict[str, AccountBalance]
    positions: dict[str, Position]
    orders: dict[uuid.UUID, Order]
    trades: dict[uuid.UUID, Trade]

    def free(self, asset: str) -> Decimal:
        row = self.balances.get(asset)
        return row.free if row is not None else ZERO

    def locked(self, asset: str) -> Decimal:
        row = self.balances.get(asset)
        return row.locked if row is not None else ZERO

    def held(self, asset: str) -> Decimal:
        return self.free(asset) + self.locked(asset)


@dataclass(frozen=True, slots=True)
class Depth:
    """Both sides of a book as (price, quantity) levels, best first."""

    bids: Levels
    asks: Levels

    @classmethod
    def of(cls, book: OrderBook) -> Depth:
        return cls(
            tuple((level.price, level.quantity) for level in book.bids),
            tuple((level.price, level.quantity) for level in book.asks),
        )

    def side(self, taker: OrderSide) -> Levels:
        """What a taker of `taker` side trades against."""
        return self.asks if taker is OrderSide.BUY else self.bids


async def read_holdings(
    services: Services, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Holdings]:
    ids = list(account_ids)
    async with services.database.database.read() as session:
        accounts = (
            await session.scalars(select(TradingAccount).where(TradingAccount.id.in_(ids)))
        ).all()
        balances = (
            await session.scalars(select(AccountBalance).where(AccountBalance.account_id.in_(ids)))
        ).all()
        positions = (
            await session.scalars(select(Position).where(Position.account_id.in_(ids)))
        ).all()
        orders = (await session.scalars(select(Order).where(Order.account_id.in_(ids)))).all()
        trades = (await session.scalars(select(Trade).where(Trade.account_id.in_(ids)))).all()
    found = {account.id: Holdings(account, {}, {}, {}, {}) for account in accounts}
    missing = set(ids) - set(found)
    assert not missing, f"accounts not found: {sorted(map(str, missing))}"
    for balance in balances:
        found[balance.account_id].balances[balance.asset] = balance
    for position in positions:
        found[position.account_id].positions[position.symbol] = position
    for order in orders:
        found[order.account_id].orders[order.id] = order
    for trade in trades:
        found[trade.account_id].trades[trade.id] = trade
    return found


def _columns(row: Any) -> Columns:
    return {attr.key: getattr(row, attr.key) for attr in inspect(row).mapper.column_attrs}


def snapshot(holdings: Holdings) -> dict[str, Any]:
    """Every column of every row the account has, as plain values: equal snapshots mean
    nothing of the account changed, not even a timestamp."""
    return {
        "account": _columns(holdings.account),
        "balances": {asset: _columns(row) for asset, row in holdings.balances.items()},
        "positions": {symbol: _columns(row) for symbol, row in holdings.positions.items()},
        "orders": {order_id: _columns(row) for order_id, row in holdings.orders.items()},
        "trades": {trade_id: _columns(row) for trade_id, row in holdings.trades.items()},
    }


async def snapshot_accounts(
    services: Services, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    holdings = await read_holdings(services, account_ids)
    return {account_id: snapshot(h) for account_id, h in holdings.items()}


def taker_book(services: Services, symbol: str) -> Depth:
    """The book the exchange hands the next taker order of `symbol`: the market step's
    book minus what orders already took from it. No public API shows it, and the
    checks are about exactly that object, so this reads the service's private
    `_books` (a services/paper_trading/booking.TakerBooks): acceptable in a test, and
    the one place to change if the exchange renames it."""
    return Depth.of(services.paper_trading._books.book(symbol))


def _base_of(symbol: str) -> str:
    return symbol.partition("/")[0]


def _quote_of(symbol: str) -> str:
    return symbol.partition("/")[2]


def _locked_asset(order: Order) -> str:
    return _quote_of(order.symbol) if order.side == OrderSide.BUY.value else _base_of(order.symbol)


def _accounting(h: Holdings) -> list[str]:
    account = h.account
    cash = h.held(account.base_currency)
    cost = sum((p.cost_basis for p in h.positions.values()), ZERO)
    expected = account.initial_balance + account.realized_pnl - account.total_fees
    problems = []
    if cash + cost != expected:
        problems.append(
            f"cash {cash} + cost basis {cost} = {cash + cost}, but initial "
            f"{account.initial_balance} + realized {account.realized_pnl} - fees "
            f"{account.total_fees} = {expected}"
        )
    fees = sum((t.fee for t in h.trades.values()), ZERO)
    if account.total_fees != fees:
        problems.append(f"total_fees {account.total_fees} but the trades paid {fees}")
    realized = sum((t.realized_pnl for t in h.trades.values()), ZERO)
    if account.realized_pnl != realized:
        problems.append(f"realized_pnl {account.realized_pnl} but the trades realized {realized}")
    for asset, row in h.balances.items():
        if row.free < 0 or row.locked < 0:
            problems.append(f"{asset} balance negative: free {row.free}, locked {row.locked}")
    for symbol, position in h.positions.items():
        base = _base_of(symbol)
        if position.quantity != h.held(base):
            problems.append(
                f"{symbol} position {position.quantity}, but {h.held(base)} {base} held "
                f"({h.free(base)} free + {h.locked(base)} locked)"
            )
    return problems


def _locks(h: Holdings) -> list[str]:
    problems = []
    locked: dict[str, Decimal] = defaultdict(Decimal)
    for order in h.orders.values():
        if order.locked_amount < 0:
            problems.append(f"order {order.id} locks a negative {order.locked_amount}")
        if order.status in _OPEN:
            locked[_locked_asset(order)] += order.locked_amount
        elif order.locked_amount:
            problems.append(
                f"order {order.id} is {order.status} but still locks {order.locked_amount}"
            )
    for asset in set(locked) | set(h.balances):
        if locked[asset] != h.locked(asset):
            problems.append(
                f"{asset}: open orders lock {locked[asset]} in all, the balance has "
                f"{h.locked(asset)} locked"
            )
    return problems


def _orders(h: Holdings) -> list[str]:
    problems = []
    trades: dict[uuid.UUID, list[Trade]] = defaultdict(list)
    for trade in h.trades.values():
        trades[trade.order_id].append(trade)
    for order in h.orders.values():
        filled = sum((t.quantity for t in trades[order.id]), ZERO)
        fees = sum((t.fee for t in trades[order.id]), ZERO)
        if order.filled_quantity != filled:
            problems.append(
                f"order {order.id} filled_quantity {order.filled_quantity}, its trades {filled}"
            )
        if order.fees != fees:
            problems.append(f"order {order.id} fees {order.fees}, its trades paid {fees}")
        if order.filled_quantity > order.quantity:
            problems.append(f"order {order.id} filled {order.filled_quantity} of {order.quantity}")
        if order.status == OrderStatus.FILLED.value and order.filled_quantity != order.quantity:
            problems.append(
                f"order {order.id} is filled at {order.filled_quantity} of {order.quantity}"
            )
    return problems


def ledger_problems(holdings: Mapping[uuid.UUID, Holdings]) -> list[str]:
    """Every way the accounts break the ledger's rules, one line each (empty: none)."""
    problems = []
    for account_id, h in holdings.items():
        problems += [
            f"account {account_id}: {problem}"
            for problem in (*_accounting(h), *_locks(h), *_orders(h))
        ]
    return problems


async def assert_ledger_holds(services: Services, account_ids: Iterable[uuid.UUID]) -> None:
    """Per account, exactly: cash + Σ cost basis = initial + realized PnL - fees; total
    fees and realized PnL are the trades' sums; nothing negative; each position is the
    base asset held; per asset the open orders' locks are the balance's locked amount
    and closed orders lock nothing; each order's filled quantity and fees are its
    trades', never past its quantity, and all of it when it is filled."""
    problems = ledger_problems(await read_holdings(services, account_ids))
    assert not problems, "the ledger does not hold:\n" + "\n".join(problems)


@dataclass(frozen=True, slots=True)
class FeeRates:
    """The rates an account's fills must pay, in basis points."""

    maker_bps: Decimal
    taker_bps: Decimal

    def of(self, liquidity: str) -> Decimal:
        return self.maker_bps if liquidity == Liquidity.MAKER.value else self.taker_bps


def fee_problems(
    holdings: Mapping[uuid.UUID, Holdings], rates: Mapping[uuid.UUID, FeeRates]
) -> list[str]:
    """Fills whose fee is not their notional at the account's rate for their liquidity
    (to within FEE_QUANTUM)."""
    problems = []
    for account_id, h in holdings.items():
        for trade in h.trades.values():
            bps = rates[account_id].of(trade.liquidity)
            exact = trade.price * trade.quantity * bps / _BPS
            if abs(trade.fee - exact) > FEE_QUANTUM:
                problems.append(
                    f"account {account_id}: a {trade.liquidity} {trade.side} of "
                    f"{trade.quantity} @ {trade.price} paid {trade.fee}; at {bps} bps "
                    f"it owes {exact}"
                )
    return problems


def differences(
    before: Mapping[uuid.UUID, Mapping[str, Any]], after: Mapping[uuid.UUID, Mapping[str, Any]]
) -> list[str]:
    """What changed between two `snapshot_accounts`, one line per row (empty: nothing)."""
    changes = []
    for account_id in sorted(set(before) | set(after), key=str):
        old, new = before.get(account_id, {}), after.get(account_id, {})
        if old.get("account") != new.get("account"):
            changes.append(f"account {account_id}: {_changed(old['account'], new['account'])}")
        for table in ("balances", "positions", "orders", "trades"):
            old_rows, new_rows = old.get(table, {}), new.get(table, {})
            for key in sorted(set(old_rows) | set(new_rows), key=str):
                if key not in old_rows:
                    changes.append(f"account {account_id}: {table} {key} added")
                elif key not in new_rows:
                    changes.append(f"account {account_id}: {table} {key} removed")
                elif old_rows[key] != new_rows[key]:
                    changes.append(
                        f"account {account_id}: {table} {key}: "
                        f"{_changed(old_rows[key], new_rows[key])}"
                    )
    return changes


def _changed(old: Columns, new: Columns) -> str:
    return ", ".join(
        f"{name} {old.get(name)!r} -> {new.get(name)!r}"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    )


def walk(levels: Levels, quantity: Decimal, *, buy: bool, limit: Decimal | None) -> Levels:
    """What a taker gets from `levels`: from the touch, one fill per level, within its limit."""
    fills, left = [], quantity
    for price, available in levels:
        if not left or (limit is not None and (price > limit if buy else price < limit)):
            break
        take = min(left, available)
        if take > 0:
            fills.append((price, take))
            left -= take
    return tuple(fills)


def without(depth: Depth, side: OrderSide, fills: Levels) -> Depth:
    """The book once a `side` taker took `fills` from it."""
    taken = dict(fills)
    left = tuple(
        (price, quantity - taken.get(price, ZERO))
        for price, quantity in depth.side(side)
        if quantity - taken.get(price, ZERO) > 0
    )
    if side is OrderSide.BUY:
        return Depth(depth.bids, left)
    return Depth(left, depth.asks)


@dataclass
class StepDepth:
    """What one market step's book showed, and every fill of the step so far.

    A buy filled at p took its depth from the asks at p or below (a taker at its level,
    a maker from the touch up to its limit), a sell from the bids at p or above. So at
    every price p, the fills at p or better took at most what the book showed there;
    and with what the taker book still offers at p or better, at most that too (what
    the step's fills took must be gone from the book the next order sees; depth taken in
    earlier steps may still be missing, which only lowers the sum)."""

    number: int
    shown: Depth
    fills: list[Trade] = field(default_factory=list)

    def _sums(
        self, side: OrderSide, price: Decimal, offered: Depth
    ) -> tuple[Decimal, Decimal, Decimal]:
        buy = side is OrderSide.BUY

        def reach(p: Decimal) -> bool:
            return p <= price if buy else p >= price

        took = sum((t.quantity for t in self.fills if t.side == side and reach(t.price)), ZERO)
        there = sum((q for p, q in self.shown.side(side) if reach(p)), ZERO)
        left = sum((q for p, q in offered.side(side) if reach(p)), ZERO)
        return took, there, left

    def _describe(self, side: OrderSide, offered: Depth) -> str:
        fills = ", ".join(
            f"{t.liquidity} {t.quantity}@{t.price}" for t in self.fills if t.side == side
        )
        book = "asks" if side is OrderSide.BUY else "bids"
        return (
            f"the step's {book} {self.shown.side(side)}, its {side} fills [{fills}], "
            f"the taker book's {book} now {offered.side(side)}"
        )

    def overfilled(self, offered: Depth) -> list[str]:
        """Prices where the step's fills took more than its book showed."""
        problems = []
        for side in OrderSide:
            fills = [t for t in self.fills if t.side == side]
            for price in sorted({t.price for t in fills}):
                took, there, _ = self._sums(side, price, offered)
                takers = sum(
                    (
                        t.quantity
                        for t in fills
                        if t.price == price and t.liquidity == Liquidity.TAKER.value
                    ),
                    ZERO,
                )
                at = sum((q for p, q in self.shown.side(side) if p == price), ZERO)
                if took > there or takers > at:
                    problems.append(
                        f"step {self.number}: {side} fills at {price} or better took {took} "
                        f"(takers {takers} at {price}); the book showed {there} there ({at} "
                        f"at {price}). {self._describe(side, offered)}"
                    )
        return problems

    def still_offered(self, offered: Depth) -> list[str]:
        """Prices where the taker book still offers depth the step's fills took."""
        problems = []
        for side in OrderSide:
            prices = {t.price for t in self.fills if t.side == side}
            prices |= {p for p, _ in self.shown.side(side)} | {p for p, _ in offered.side(side)}
            for price in sorted(prices):
                took, there, left = self._sums(side, price, offered)
                if took + left > there:
                    problems.append(
                        f"step {self.number}: at {price} or better the {side} fills took "
                        f"{took} and the taker book still offers {left}, of the {there} "
                        f"shown. {self._describe(side, offered)}"
                    )
                    break
        return problems
