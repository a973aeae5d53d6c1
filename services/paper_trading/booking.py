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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import BookLevel, OrderBook, PairRules, Tick, Ticker
from database.connection import Database
from database.orm import OPEN_ORDER_STATUSES, Order, Position, Trade
from database.orm.types import strip_zeros, utcnow
from database.repositories import orders as order_repo
from database.repositories import trades as trade_repo
from models.base import AppModel, decimal_to_str
from models.enums import Liquidity, OrderSide, OrderStatus, OrderType, StopTrigger, TimeInForce
from models.events import Channel, EventType
from models.trading import FillRead, OrderRead
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.paper_trading.fees import FeeRates
from services.paper_trading.liquidity import Venue, VenueBook
from services.paper_trading.matching import (
    MONEY_CONTEXT,
    Execution,
    Fill,
    Outcome,
    Rejection,
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
        expires_at=row.expires_at,
        post_only=row.post_only,
        stop_trigger=StopTrigger(row.stop_trigger) if order_type in STOPS else StopTrigger.LAST,
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


def _walk_of(execution: Execution) -> tuple[BookLevel, ...]:
    """The levels an execution took from the book, one per fill."""
    return tuple(BookLevel(f.price, f.quantity) for f in execution.fills)


class TakerBooks:
    """The book takers see: the latest market step's book minus what paper orders took
    from it and the venue has not refilled yet (services/paper_trading/liquidity.py).

    `recovery` is the share of the taken depth the venue refills per market step, in
    (0, 1]; 1 (the default) shows the fresh book every step. Give a `venue` instead to
    share one with an `OrderIndex`, so makers and takers draw on the same depth.
    """

    def __init__(
        self, market: MarketView, *, recovery: Decimal | None = None, venue: Venue | None = None
    ) -> None:
        if venue is not None and recovery is not None and recovery != venue.recovery:
            raise ValueError("the venue has its own recovery rate")
        self._market = market
        if venue is None:
            venue = Venue(recovery=Decimal(1) if recovery is None else recovery)
        self._venue = venue
        self._quanta: dict[str, Decimal] = {}

    @property
    def venue(self) -> Venue:
        return self._venue

    def set_book(self, symbol: str, book: OrderBook) -> None:
        """The market stepped: takers now see its book, less what is still consumed."""
        if book.symbol != symbol:
            raise ValueError(f"the book is for {book.symbol}, not {symbol}")
        self._venue.advance(book, quantum=self._quantum(symbol))

    def _quantum(self, symbol: str) -> Decimal:
        quantum = self._quanta.get(symbol)
        if quantum is None:
            quantum = self._quanta[symbol] = self._market.pair_rules(symbol).step_size
        return quantum

    def _venue_book(self, symbol: str) -> VenueBook:
        venue_book = self._venue.get(symbol)
        if venue_book is None or not venue_book.has_book:
            # No market step yet: the market's current book is the first one.
            venue_book = self._venue.advance(
                self._market.order_book(symbol, depth=100), quantum=self._quantum(symbol)
            )
        return venue_book

    def book(self, symbol: str) -> OrderBook:
        return self._venue_book(symbol).view()

    def take(self, order: EngineOrder, taker_fee_bps: Decimal) -> Execution:
        """Execute against the current book and take the liquidity at once (no await in
        between, so concurrent orders never take the same depth). An order that is then
        refused, or whose transaction fails, returns it with `give_back`."""
        venue_book = self._venue_book(order.symbol)
        execution = execute(order, venue_book.view(), taker_fee_bps=taker_fee_bps)
        if not execution.fills:
            return execution
        book_side = OrderSide.SELL if order.side is OrderSide.BUY else OrderSide.BUY
        taken = venue_book.take(book_side, _walk_of(execution))
        return Execution(
            execution.order, execution.fills, execution.outcome, execution.rejection, taken
        )

    def give_back(self, execution: Execution) -> None:
        """Return the depth `execution` took (at most once; the venue refills only what
        recovery would have left consumed by now, never past the external book)."""
        if execution.taken is not None:
            self._venue.give_back(execution.taken)


def _buy_reserve(quantity: Decimal, price: Decimal, fee_bps: Decimal) -> Decimal:
    with localcontext(MONEY_CONTEXT):
        notional = quantity * price
        return notional + fee_for(notional, fee_bps)


def buy_rest_reserve(fee_bps: Decimal, working: EngineOrder, resting: Decimal) -> Decimal:
    """What a buy's open rest keeps locked: its cost at its limit (a stop-market at its
    stop plus STOP_BUY_BUFFER) and the fee at `fee_bps`, the highest rate it may pay.
    Enough to the unit: the rest fills at its limit as maker, and `price_fills` makes
    its maker fees add up to exactly the fee of their total notional."""
    if not resting:
        return ZERO
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
    fee_bps: Decimal,
    working: EngineOrder,
    resting: Decimal,
) -> None:
    """Keep exactly the reserve of the resting part locked; free the rest."""
    excess = order.locked_amount - buy_rest_reserve(fee_bps, working, resting)
    if excess > 0:
        ledger.change_balance(book, asset, free=excess, locked=-excess)
        order.locked_amount = order.locked_amount - excess


def price_fills(
    fills: Iterable[Fill], rates: FeeRates, earlier: Iterable[Trade] = ()
) -> tuple[Fill, ...]:
    """The fills with the fees they pay: per liquidity kind, the fee of the order's
    cumulative notional minus what its earlier fills of that kind paid. Per-fill
    rounding could otherwise add up past what the order reserved, however many
    partial fills it gets; this way an order's fees of one kind are always exactly
    `fee_for(total notional of that kind)`."""
    notional = {Liquidity.MAKER: ZERO, Liquidity.TAKER: ZERO}
    with localcontext(MONEY_CONTEXT):
        for trade in earlier:
            notional[Liquidity(trade.liquidity)] += trade.price * trade.quantity
        priced = []
        for fill in fills:
            kind = Liquidity(fill.liquidity)
            bps = rates.maker_bps if kind is Liquidity.MAKER else rates.taker_bps
            before = notional[kind]
            after = notional[kind] = before + fill.notional
            fee = fee_for(after, bps) - fee_for(before, bps)
            priced.append(replace(fill, fee=fee))
    return tuple(priced)


def locked_asset(order: Order, quote_asset: str) -> str:
    """What an order locks: the quote currency for a buy, the base asset for a sell.
    Taken from the symbol (BASE/QUOTE), so an order of a pair no longer traded can
    still be cancelled and release its lock."""
    if order.side == OrderSide.BUY.value:
        return quote_asset
    return order.symbol.partition("/")[0]


def release(book: ledger.Book, order: Order, asset: str) -> None:
    left = order.locked_amount
    if left > 0:
        ledger.change_balance(book, asset, free=left, locked=-left)
    order.locked_amount = ZERO


def cancel_in_book(book: ledger.Book, order: Order, reason: str, now: datetime) -> None:
    """Close an open order as cancelled: what it still locks goes back to the free
    balance (of the asset its side locks, taken from its symbol), with `reason`.
    Every cancel takes this path: the user's, an expiry, a replacement, the exchange's."""
    release(book, order, locked_asset(order, book.account.base_currency))
    order.status = OrderStatus.CANCELLED.value
    order.closed_at = now
    order.reject_reason = reason


async def cancel_by_exchange(
    database: Database, bus: EventBus, order_id: uuid.UUID, reason: Callable[[Order], str]
) -> OrderRead | None:
    """The exchange's own cancel of an open order (an expiry, a fill that keeps
    failing), in its own transaction: its lock released, `reason(order)` as its reason,
    `order_cancelled` published. None when the order is gone or no longer open."""
    async with database.transaction() as session:
        row = await order_repo.get_by_id(session, order_id)
        if row is None:
            return None
        # Account first, then the order: the lock order every path takes.
        book = await ledger.lock_book(session, row.account_id)
        order = await order_repo.lock_by_id(session, order_id)
        if order is None or order.status not in {s.value for s in OPEN_ORDER_STATUSES}:
            return None
        cancel_in_book(book, order, reason(order), utcnow())
        await ledger.write_balances(session, book)
        read = read_order(order, await trade_repo.of_order(session, order.id))
    outbox = Outbox(order.user_id)
    outbox.events.append((Channel.TRADES, EventType.ORDER_CANCELLED, read.model_dump(mode="json")))
    await publish(bus, outbox)
    return read


async def read_orders(session: AsyncSession, rows: list[Order]) -> list[OrderRead]:
    """The orders as the API shows them, each with its fills (one query for all)."""
    trades: dict[uuid.UUID, list[Trade]] = {row.id: [] for row in rows}
    if rows:
        for trade in await trade_repo.of_orders(session, list(trades)):
            trades[trade.order_id].append(trade)
    return [read_order(row, trades[row.id]) for row in rows]


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
    elif execution.outcome is Outcome.REJECTED and execution.rejection is Rejection.POST_ONLY:
        order.status = OrderStatus.REJECTED.value
        order.reject_reason = "post-only: the limit would have taken liquidity from the book"
    elif execution.outcome is Outcome.REJECTED:
        order.status = OrderStatus.REJECTED.value
        order.reject_reason = "fill or kill: the book could not fill the whole quantity" + (
            " within the limit" if order.price is not None else ""
        )
    elif not order.filled_quantity and order.time_in_force == TimeInForce.IOC.value:
        # Nothing was wrong with the order: it expired unfilled, as IOC asks.
        order.status = OrderStatus.CANCELLED.value
        order.reject_reason = "immediate or cancel: nothing could fill at once" + (
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
    trades (`earlier`: those it had, read from the database when not given). The fills
    carry their final fees (`price_fills`)."""
    if earlier is None:
        earlier = await trade_repo.of_order(session, order.id) if order.filled_quantity else []
    side = OrderSide(order.side)
    if position is None:
        position = await ledger.position_of(session, book.account, order.symbol)
    trades = []
    sells: list[ledger.Booked] = []
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
        if side is OrderSide.SELL:
            sells.append(booked)
    if sells:
        ledger.count_reduction(book.account, sells)
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
