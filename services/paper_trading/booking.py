"""What placing an order and filling a resting one share: the taker's view of the book,
the per-account gate, booking fills into an order, and the events of a transaction.

Nothing here opens a transaction: the service (services/paper_trading/service.py) and
the tick-driven fill path (services/paper_trading/fills.py) each open one per order and
pass the session down.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import BookLevel, OrderBook, PairRules, Tick, Ticker
from database.orm import Order, Position, Trade
from database.orm.types import strip_zeros
from database.repositories import trades as trade_repo
from models.base import AppModel, decimal_to_str
from models.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from models.events import Channel, EventType
from models.trading import FillRead, OrderRead
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.paper_trading.matching import (
    MONEY_CONTEXT,
    BookWalk,
    Execution,
    Fill,
    Outcome,
    consume,
    execute,
    fee_for,
)
from services.paper_trading.matching import Order as EngineOrder

# Logged under the service's name, where these lines lived before the split.
log = structlog.get_logger("services.paper_trading.service")
ModelT = TypeVar("ModelT", bound=AppModel)

ZERO = Decimal(0)
# A stop-market buy executes at whatever the book offers once triggered: it locks its
# stop price plus this margin, and is rejected at trigger if the fill would cost more
# than the lock and the free cash together.
STOP_BUY_BUFFER = Decimal("0.05")
STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
# Orders of one account in flight at once in this process (see `AccountGates`).
_ORDERS_IN_FLIGHT = 2


class MarketView(Protocol):
    """What the paper exchange needs of the market data service."""

    def resolve_symbol(self, raw: str) -> str: ...
    def pair_rules(self, symbol: str) -> PairRules: ...
    def ticker(self, symbol: str) -> Ticker: ...
    def order_book(self, symbol: str, depth: int = 20) -> OrderBook: ...
    def add_tick_listener(
        self, listener: Callable[[Mapping[str, Tick]], Awaitable[None]]
    ) -> Callable[[], None]: ...


@dataclass(slots=True)
class Outbox:
    """Events of one transaction, published once it has committed."""

    user_id: uuid.UUID
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


async def publish(bus: EventBus, outbox: Outbox) -> None:
    for channel, event_type, data in outbox.events:
        try:
            await bus.publish(channel, event_type, data, user_id=outbox.user_id)
        except Exception:  # the ledger has committed; a lost event is logged, not raised
            log.exception("event_publish_failed", channel=channel, event_type=event_type)


def _canonical(model: ModelT) -> ModelT:
    """Amounts as the database hands them back (no trailing zeros), so an order reads
    the same in the reply that placed it and in every later GET."""
    for name, value in model:
        if isinstance(value, Decimal):
            setattr(model, name, strip_zeros(value))
    return model


def fill_of(trade: Trade) -> FillRead:
    return _canonical(FillRead.model_validate(trade))


def read_order(order: Order, trades: list[Trade]) -> OrderRead:
    read = _canonical(OrderRead.model_validate(order))
    read.fills = [fill_of(t) for t in sorted(trades, key=lambda t: t.executed_at)]
    return read


def announce(outbox: Outbox, order: OrderRead, trades: list[Trade]) -> None:
    data = order.model_dump(mode="json", exclude={"fills"})
    data["fills"] = [fill_of(t).model_dump(mode="json") for t in trades]
    outbox.events.append((Channel.TRADES, EventType.TRADE_EXECUTION, data))


def engine_order(row: Order) -> EngineOrder:
    """The matching engine's copy of an open order as the database has it."""
    order_type = OrderType(row.order_type)
    if row.triggered_at is not None and order_type is OrderType.STOP_LIMIT:
        order_type = OrderType.LIMIT  # a triggered stop-limit rests as its limit
    return EngineOrder(
        id=str(row.id),
        account_id=str(row.account_id),
        symbol=row.symbol,
        side=OrderSide(row.side),
        order_type=order_type,
        time_in_force=TimeInForce(row.time_in_force),
        quantity=row.quantity,
        remaining=row.quantity - row.filled_quantity,
        limit_price=row.price,
        stop_price=row.stop_price if order_type in STOPS else None,
    )


class AccountGates:
    """Orders and fills of one account queue in this process before they ask for the
    account's row lock: waiting coroutines instead of idle connections. Two pass at a
    time: one holds the row lock while the next, its connection checked out and its
    transaction begun, waits on it in the database, which hands it over the moment the
    first commits. The row lock is what orders them, here and across processes."""

    def __init__(self) -> None:
        self._gates: weakref.WeakValueDictionary[uuid.UUID, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )

    def __call__(self, account_id: uuid.UUID) -> asyncio.Semaphore:
        gate = self._gates.get(account_id)
        if gate is None:
            gate = self._gates[account_id] = asyncio.Semaphore(_ORDERS_IN_FLIGHT)
        return gate


def _walk_of(execution: Execution) -> BookWalk:
    levels = tuple(BookLevel(f.price, f.quantity) for f in execution.fills)
    return BookWalk(
        levels, execution.filled_quantity, execution.order.remaining, execution.notional
    )


class TakerBooks:
    """The book takers see: the latest market step's, minus what orders took from it."""

    def __init__(self, market: MarketView) -> None:
        self._market = market
        self._books: dict[str, OrderBook] = {}

    def set_book(self, symbol: str, book: OrderBook) -> None:
        """The market stepped: takers now see its book."""
        self._books[symbol] = book

    def book(self, symbol: str) -> OrderBook:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = self._market.order_book(symbol, depth=100)
        return book

    def take(self, order: EngineOrder, taker_fee_bps: Decimal) -> Execution:
        """Execute against the current book and take the liquidity at once (no await in
        between, so concurrent orders never take the same depth). If the order's
        transaction then fails, that depth stays gone until the next market step:
        conservative, never double-counted."""
        execution = execute(order, self.book(order.symbol), taker_fee_bps=taker_fee_bps)
        if execution.fills:
            self._books[order.symbol] = consume(
                self.book(order.symbol), order.side, _walk_of(execution)
            )
        return execution


def _buy_reserve(quantity: Decimal, price: Decimal, fee_bps: Decimal) -> Decimal:
    with localcontext(MONEY_CONTEXT):
        notional = quantity * price
        return notional + fee_for(notional, fee_bps)


def buy_rest_reserve(account: Any, working: EngineOrder, resting: Decimal) -> Decimal:
    if not resting:
        return ZERO
    fee_bps = max(account.maker_fee_bps, account.taker_fee_bps)
    if working.limit_price is not None:
        return _buy_reserve(resting, working.limit_price, fee_bps)
    if working.stop_price is None:
        raise ValueError(f"order {working.id} has neither a limit nor a stop price")
    with localcontext(MONEY_CONTEXT):
        price = working.stop_price * (1 + STOP_BUY_BUFFER)
    return _buy_reserve(resting, price, fee_bps)


def trim_lock(
    book: ledger.Book,
    order: Order,
    asset: str,
    account: Any,
    working: EngineOrder,
    resting: Decimal,
) -> None:
    """Keep exactly the reserve of the resting part locked; free the rest."""
    excess = order.locked_amount - buy_rest_reserve(account, working, resting)
    if excess > 0:
        ledger.change_balance(book, asset, free=excess, locked=-excess)
        order.locked_amount = order.locked_amount - excess


def release(book: ledger.Book, order: Order, asset: str) -> None:
    left = order.locked_amount
    if left > 0:
        ledger.change_balance(book, asset, free=left, locked=-left)
    order.locked_amount = ZERO


def finish(order: Order, execution: Execution | None, resting: Decimal, now: datetime) -> None:
    if resting:
        order.status = (
            OrderStatus.PARTIAL.value if order.filled_quantity else OrderStatus.PENDING.value
        )
        return
    if execution is None:
        raise ValueError(f"order {order.id} neither rests nor executed")
    order.closed_at = now
    if execution.outcome is Outcome.FILLED:
        order.status = OrderStatus.FILLED.value
    elif execution.outcome is Outcome.REJECTED:
        order.status = OrderStatus.REJECTED.value
        order.reject_reason = "fill or kill: the book could not fill the whole quantity" + (
            " within the limit" if order.price is not None else ""
        )
    elif not order.filled_quantity:
        order.status = OrderStatus.REJECTED.value
        order.reject_reason = "no liquidity" + (
            " within the limit" if order.price is not None else " in the book"
        )
    else:
        order.status = OrderStatus.CANCELLED.value
        order.reject_reason = (
            f"{order.filled_quantity} of {order.quantity} filled; the rest was cancelled "
            f"({'immediate or cancel' if order.time_in_force == 'IOC' else 'book exhausted'})"
        )


async def apply_fills(
    session: AsyncSession,
    book: ledger.Book,
    order: Order,
    rules: PairRules,
    fills: tuple[Fill, ...] | list[Fill],
    now: datetime,
    outbox: Outbox,
    *,
    earlier: list[Trade] | None = None,
    position: Position | None = None,
) -> list[Trade]:
    """Pay each fill out of the order's lock and book it; returns all the order's
    trades (`earlier`: those it had, read from the database when not given)."""
    if earlier is None:
        earlier = await trade_repo.of_order(session, order.id) if order.filled_quantity else []
    side = OrderSide(order.side)
    if position is None:
        position = await ledger.position_of(session, book.account, order.symbol)
    trades = []
    for fill in fills:
        with localcontext(MONEY_CONTEXT):
            due = fill.notional + fill.fee if side is OrderSide.BUY else fill.quantity
            from_lock = min(due, order.locked_amount)
        booked = ledger.book_fill(
            session,
            book,
            position,
            order_id=order.id,
            side=side,
            fill=fill,
            base_asset=rules.base_asset,
            quote_asset=rules.quote_asset,
            executed_at=now,
            cash_from_lock=from_lock if side is OrderSide.BUY else ZERO,
            base_from_lock=from_lock if side is OrderSide.SELL else ZERO,
        )
        order.locked_amount = order.locked_amount - from_lock
        order.filled_quantity = order.filled_quantity + fill.quantity
        order.fees = order.fees + fill.fee
        trades.append(booked.trade)
    all_trades = earlier + trades
    with localcontext(MONEY_CONTEXT):
        notional = sum((t.price * t.quantity for t in all_trades), ZERO)
        order.average_price = (
            ledger.stored(notional / order.filled_quantity) if order.filled_quantity else None
        )
    outbox.events.append(
        (
            Channel.PORTFOLIO,
            EventType.PORTFOLIO_UPDATE,
            {
                "kind": "fill",
                "account_id": str(book.account.id),
                "symbol": order.symbol,
                "position_quantity": decimal_to_str(position.quantity),
                "cash": decimal_to_str(
                    book.free(rules.quote_asset) + book.locked(rules.quote_asset)
                ),
                "realized_pnl": decimal_to_str(book.account.realized_pnl),
            },
        )
    )
    return all_trades
