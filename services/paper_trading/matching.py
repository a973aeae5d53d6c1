"""The paper exchange's matching core: pure, deterministic, `Decimal` only.

No database, no I/O, no clock: the paper trading service calls it inside the
transaction that persists the order, its fills and the balances.

Taker side (`walk_book`, `execute`). A buy consumes the asks from the touch upward, a
sell the bids downward; every level touched is one fill at that level's price, so size
moves the price and a thin book fills partially. A limit caps the walk (a buy takes
levels priced <= its limit, a sell levels >= its limit).

- market: whatever its time in force, the part the book cannot fill is cancelled; FOK
  makes it all or nothing over the whole book.
- limit GTC: takes what crosses, up to its limit, then the rest rests (the caller adds
  it to `OrderIndex`); IOC cancels the rest; FOK trades only when the whole quantity is
  available within the limit, otherwise nothing trades.

Maker side (`OrderIndex.on_market`). A resting buy limit fills when the ask is at or
below its price, a sell limit when the bid is at or above it, always at its own limit
price: the flow that moved the market through the order would have traded with it
there, and no price improvement is invented. Quantity: without a book, the whole
remaining quantity; with the book, the opposing depth at or better than the limit,
shared by the crossed orders in price-time priority, so a thin book fills partially
and the rest keeps resting with its priority. Each call is one snapshot: liquidity is
not carried from one call to the next.

Stops trigger on the last price (buy when last >= stop, sell when last <= stop), leave
the index and come back converted (stop -> market, stop_limit -> limit at its limit
price, same time in force) for the caller to execute against the book.

Fees: `fee = notional * bps / 10000` on every fill, rounded ROUND_HALF_UP to
`FEE_QUANTUM` (1e-8 of the quote currency); taker rate in `execute`, maker rate for
resting fills. Arithmetic runs in `MONEY_CONTEXT` (40 significant digits, so prices
times quantities stay exact) whatever the caller's thread context is.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum

from connectors.base import BookLevel, OrderBook, Ticker
from models.enums import Liquidity, OrderSide, OrderType, TimeInForce

MONEY_CONTEXT = Context(
    prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
FEE_QUANTUM = Decimal("0.00000001")
# The average fill price is a quotient that rarely terminates: 28 significant digits,
# Python's default precision, is plenty for display; the ledger uses the fills' notional.
AVERAGE_PRICE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)

_ZERO = Decimal(0)
_BPS = Decimal(10000)
# Cancelled orders leave stale heap entries (lazy deletion); a symbol's heaps are
# rebuilt once its stale entries outnumber its live orders and this floor.
_COMPACT_FLOOR = 256


class Outcome(StrEnum):
    """What happened to an order executed as taker."""

    FILLED = "filled"  # nothing left
    RESTING = "resting"  # GTC limit: the rest (maybe all of it) rests in the index
    CANCELLED = "cancelled"  # market or IOC: the rest is cancelled, fills are kept
    REJECTED = "rejected"  # FOK that could not fill completely: nothing traded


_NEEDS_LIMIT = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_NEEDS_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


@dataclass(frozen=True, slots=True)
class Order:
    """The engine's view of an order; `remaining` is the quantity not yet filled."""

    id: str
    account_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    remaining: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"order {self.id}: quantity must be positive")
        if not _ZERO <= self.remaining <= self.quantity:
            raise ValueError(f"order {self.id}: remaining must be within [0, quantity]")
        _check_price(self, "limit_price", self.limit_price, self.order_type in _NEEDS_LIMIT)
        _check_price(self, "stop_price", self.stop_price, self.order_type in _NEEDS_STOP)

    @property
    def filled(self) -> Decimal:
        return self.quantity - self.remaining


def _check_price(order: Order, name: str, price: Decimal | None, required: bool) -> None:
    if required and price is None:
        raise ValueError(f"order {order.id}: a {order.order_type} order needs a {name}")
    if not required and price is not None:
        raise ValueError(f"order {order.id}: a {order.order_type} order takes no {name}")
    if price is not None and price <= 0:
        raise ValueError(f"order {order.id}: {name} must be positive")


@dataclass(frozen=True, slots=True)
class Fill:
    price: Decimal
    quantity: Decimal
    notional: Decimal
    fee: Decimal
    liquidity: Liquidity


def fee_for(notional: Decimal, bps: Decimal) -> Decimal:
    """`notional * bps / 10000`, rounded ROUND_HALF_UP to FEE_QUANTUM."""
    with localcontext(MONEY_CONTEXT):
        return (notional * bps / _BPS).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)


def make_fill(price: Decimal, quantity: Decimal, bps: Decimal, liquidity: Liquidity) -> Fill:
    """One fill with its exact notional and its rounded fee."""
    with localcontext(MONEY_CONTEXT):
        notional = price * quantity
    return Fill(price, quantity, notional, fee_for(notional, bps), liquidity)


def _average(notional: Decimal, quantity: Decimal) -> Decimal | None:
    return AVERAGE_PRICE_CONTEXT.divide(notional, quantity) if quantity else None


@dataclass(frozen=True, slots=True)
class BookWalk:
    """What a taker would get from a book: one (price, quantity) per level touched."""

    fills: tuple[BookLevel, ...]
    filled: Decimal
    remaining: Decimal
    notional: Decimal

    @property
    def average_price(self) -> Decimal | None:
        return _average(self.notional, self.filled)


def walk_book(
    book: OrderBook, side: OrderSide, quantity: Decimal, *, limit_price: Decimal | None = None
) -> BookWalk:
    """Consume the opposing side from the touch, stopping at `limit_price` if given."""
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    buy = side is OrderSide.BUY
    fills: list[BookLevel] = []
    left = quantity
    notional = _ZERO
    with localcontext(MONEY_CONTEXT):
        for level in book.asks if buy else book.bids:
            if not left:
                break
            if limit_price is not None and (
                level.price > limit_price if buy else level.price < limit_price
            ):
                break
            if level.quantity <= 0:
                continue
            take = min(left, level.quantity)
            fills.append(BookLevel(level.price, take))
            notional += level.price * take
            left -= take
        filled = quantity - left
    return BookWalk(tuple(fills), filled, left, notional)


def consume(book: OrderBook, side: OrderSide, walk: BookWalk) -> OrderBook:
    """The book left after `walk` (taken by a `side` taker), for the next order in the
    same snapshot, so two orders never trade the same liquidity."""
    taken = iter(walk.fills)
    pending = next(taken, None)
    left: list[BookLevel] = []
    with localcontext(MONEY_CONTEXT):
        for level in book.asks if side is OrderSide.BUY else book.bids:
            # The walk skipped empty levels and took one fill per level, in order.
            quantity = level.quantity
            if pending is not None and quantity > 0:
                if level.price != pending.price or quantity < pending.quantity:
                    raise ValueError("the walk was not taken from this book")
                quantity -= pending.quantity
                pending = next(taken, None)
            if quantity > 0:
                left.append(BookLevel(level.price, quantity))
    if pending is not None:
        raise ValueError("the walk was not taken from this book")
    if side is OrderSide.BUY:
        return replace(book, asks=tuple(left))
    return replace(book, bids=tuple(left))


@dataclass(frozen=True, slots=True)
class Execution:
    """An order executed as taker; `order.remaining` is what rests, or what was
    cancelled (CANCELLED, REJECTED)."""

    order: Order
    fills: tuple[Fill, ...]
    outcome: Outcome

    @property
    def filled_quantity(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return sum((fill.quantity for fill in self.fills), _ZERO)

    @property
    def notional(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return sum((fill.notional for fill in self.fills), _ZERO)

    @property
    def fees(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return sum((fill.fee for fill in self.fills), _ZERO)

    @property
    def average_price(self) -> Decimal | None:
        return _average(self.notional, self.filled_quantity)


def execute(order: Order, book: OrderBook, *, taker_fee_bps: Decimal) -> Execution:
    """Execute a market or limit order against `book` as taker (semantics above)."""
    if order.order_type in _NEEDS_STOP:
        raise ValueError(f"order {order.id}: a stop executes only once triggered")
    if order.symbol != book.symbol:
        raise ValueError(f"order {order.id} is for {order.symbol}, the book for {book.symbol}")
    if not order.remaining:
        raise ValueError(f"order {order.id} has nothing left to fill")
    walk = walk_book(book, order.side, order.remaining, limit_price=order.limit_price)
    if order.time_in_force is TimeInForce.FOK and walk.remaining:
        return Execution(order, (), Outcome.REJECTED)
    fills = tuple(
        make_fill(level.price, level.quantity, taker_fee_bps, Liquidity.TAKER)
        for level in walk.fills
    )
    after = replace(order, remaining=walk.remaining) if fills else order
    if not walk.remaining:
        outcome = Outcome.FILLED
    elif order.order_type is OrderType.LIMIT and order.time_in_force is TimeInForce.GTC:
        outcome = Outcome.RESTING
    else:
        outcome = Outcome.CANCELLED
    return Execution(after, fills, outcome)


def stop_is_triggered(order: Order, last: Decimal) -> bool:
    """A buy stop triggers when last >= stop, a sell stop when last <= stop."""
    if order.stop_price is None:
        raise ValueError(f"order {order.id} is not a stop")
    return last >= order.stop_price if order.side is OrderSide.BUY else last <= order.stop_price


def trigger_stop(order: Order) -> Order:
    """The order a triggered stop becomes: stop -> market, stop_limit -> limit."""
    if order.order_type is OrderType.STOP:
        return replace(order, order_type=OrderType.MARKET, stop_price=None)
    if order.order_type is OrderType.STOP_LIMIT:
        return replace(order, order_type=OrderType.LIMIT, stop_price=None)
    raise ValueError(f"order {order.id} is not a stop")


@dataclass(frozen=True, slots=True)
class RestingFill:
    """A resting limit order traded as maker; `order` is the order after the fill."""

    order: Order
    fill: Fill


@dataclass(frozen=True, slots=True)
class StopTriggered:
    """A stop left the index; `order` is what it became, to execute against the book."""

    order: Order
    stop_price: Decimal
    last_price: Decimal


MarketEvent = RestingFill | StopTriggered

# A heap entry: (sort key, sequence, price, order id). The key is the price negated
# where the best is the highest; the price is kept as is so a tick compares the touch
# with it and builds no Decimal. The sequence is unique: ties never reach the id.
_Entry = tuple[Decimal, int, Decimal, str]


class _SymbolOrders:
    """One symbol's four heaps; the top of each is the first order a move would reach."""

    __slots__ = ("buy_limits", "buy_stops", "live", "sell_limits", "sell_stops", "stale")

    def __init__(self) -> None:
        self.buy_limits: list[_Entry] = []  # highest price first
        self.sell_limits: list[_Entry] = []  # lowest price first
        self.buy_stops: list[_Entry] = []  # lowest stop first
        self.sell_stops: list[_Entry] = []  # highest stop first
        self.live = 0
        self.stale = 0

    def heaps(self) -> tuple[list[_Entry], ...]:
        return (self.buy_limits, self.sell_limits, self.buy_stops, self.sell_stops)


class _Depth:
    """The opposing side of a book, handed out from the touch to the crossed orders in
    priority order (whose limits only get worse, so one cursor serves them all)."""

    __slots__ = ("buy", "index", "left", "levels")

    def __init__(self, levels: Sequence[BookLevel], buy: bool) -> None:
        self.levels = levels
        self.buy = buy
        self.index = 0
        self.left = levels[0].quantity if levels else _ZERO

    def take(self, limit: Decimal, wanted: Decimal) -> Decimal:
        taken = _ZERO
        levels = self.levels
        while taken < wanted and self.index < len(levels):
            price = levels[self.index].price
            if price > limit if self.buy else price < limit:
                break
            step = min(wanted - taken, self.left)
            taken += step
            self.left -= step
            if self.left <= 0:
                self.index += 1
                self.left = levels[self.index].quantity if self.index < len(levels) else _ZERO
        return taken


class OrderIndex:
    """Resting limit orders and untriggered stops, per symbol, in price-time priority.

    Each symbol keeps four heaps with lazy deletion, so a market update looks at the
    top of each (four comparisons when nothing is crossed) and touches only the orders
    it crosses or triggers, never the others.
    """

    def __init__(self) -> None:
        self._symbols: dict[str, _SymbolOrders] = {}
        self._live: dict[str, tuple[Order, int]] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._live

    def count(self, symbol: str) -> int:
        """Orders resting or waiting for a trigger on `symbol`."""
        orders = self._symbols.get(symbol)
        return orders.live if orders is not None else 0

    def get(self, order_id: str) -> Order | None:
        live = self._live.get(order_id)
        return live[0] if live is not None else None

    def add(self, order: Order) -> None:
        """Rest a GTC limit order or hold a stop; later adds have lower time priority."""
        if order.id in self._live:
            raise ValueError(f"order {order.id} is already in the index")
        if not order.remaining:
            raise ValueError(f"order {order.id} has nothing left to fill")
        orders = self._symbols.get(order.symbol)
        if orders is None:
            orders = self._symbols[order.symbol] = _SymbolOrders()
        heap, price = self._place(orders, order)
        sequence = next(self._sequence)
        key = -price if heap is orders.buy_limits or heap is orders.sell_stops else price
        heapq.heappush(heap, (key, sequence, price, order.id))
        self._live[order.id] = (order, sequence)
        orders.live += 1

    @staticmethod
    def _place(orders: _SymbolOrders, order: Order) -> tuple[list[_Entry], Decimal]:
        buy = order.side is OrderSide.BUY
        if order.order_type is OrderType.LIMIT and order.limit_price is not None:
            if order.time_in_force is not TimeInForce.GTC:
                raise ValueError(f"order {order.id}: only GTC limit orders rest")
            return (orders.buy_limits if buy else orders.sell_limits), order.limit_price
        if order.order_type in _NEEDS_STOP and order.stop_price is not None:
            return (orders.buy_stops if buy else orders.sell_stops), order.stop_price
        raise ValueError(f"order {order.id}: a {order.order_type} order cannot rest")

    def cancel(self, order_id: str) -> bool:
        """Remove an order; False when it is not in the index (filled, triggered, unknown)."""
        live = self._live.pop(order_id, None)
        if live is None:
            return False
        orders = self._symbols[live[0].symbol]
        orders.live -= 1
        orders.stale += 1
        if orders.stale > orders.live and (orders.stale >= _COMPACT_FLOOR or not orders.live):
            self._compact(orders)
        return True

    def _compact(self, orders: _SymbolOrders) -> None:
        for heap in orders.heaps():
            heap[:] = [entry for entry in heap if self._is_live(entry)]
            heapq.heapify(heap)
        orders.stale = 0

    def _is_live(self, entry: _Entry) -> bool:
        live = self._live.get(entry[3])
        return live is not None and live[1] == entry[1]

    def reload(self, orders: Iterable[Order]) -> None:
        """Replace the contents with `orders`, given oldest first (their time priority).
        On a bad order nothing changes."""
        saved = (self._symbols, self._live)
        self._symbols, self._live = {}, {}
        try:
            for order in orders:
                self.add(order)
        except BaseException:
            self._symbols, self._live = saved
            raise

    def on_ticker(
        self, ticker: Ticker, *, maker_fee_bps: Decimal, book: OrderBook | None = None
    ) -> list[MarketEvent]:
        """`on_market` with the ticker's last, bid and ask."""
        return self.on_market(
            ticker.symbol,
            last=ticker.last,
            bid=ticker.bid,
            ask=ticker.ask,
            maker_fee_bps=maker_fee_bps,
            book=book,
        )

    def on_market(
        self,
        symbol: str,
        *,
        last: Decimal,
        bid: Decimal,
        ask: Decimal,
        maker_fee_bps: Decimal,
        book: OrderBook | None = None,
    ) -> list[MarketEvent]:
        """Fill the crossed limit orders and release the triggered stops of `symbol`.

        Events come buy fills, sell fills, buy triggers, sell triggers, each in
        price-time priority. Filled and triggered orders leave the index; a partly
        filled one stays with its priority.
        """
        events: list[MarketEvent] = []
        orders = self._symbols.get(symbol)
        if orders is None:
            return events
        if book is not None and book.symbol != symbol:
            raise ValueError(f"the book is for {book.symbol}, the update for {symbol}")
        heap = orders.buy_limits
        if heap and heap[0][2] >= ask:
            depth = _Depth(book.asks, buy=True) if book is not None else None
            self._fill(orders, heap, OrderSide.BUY, ask, maker_fee_bps, depth, events)
        heap = orders.sell_limits
        if heap and heap[0][2] <= bid:
            depth = _Depth(book.bids, buy=False) if book is not None else None
            self._fill(orders, heap, OrderSide.SELL, bid, maker_fee_bps, depth, events)
        heap = orders.buy_stops
        if heap and heap[0][2] <= last:
            self._trigger(orders, heap, OrderSide.BUY, last, events)
        heap = orders.sell_stops
        if heap and heap[0][2] >= last:
            self._trigger(orders, heap, OrderSide.SELL, last, events)
        return events

    def _fill(
        self,
        orders: _SymbolOrders,
        heap: list[_Entry],
        side: OrderSide,
        touch: Decimal,
        fee_bps: Decimal,
        depth: _Depth | None,
        events: list[MarketEvent],
    ) -> None:
        buy = side is OrderSide.BUY
        keep: list[_Entry] = []
        while heap:
            entry = heap[0]
            price = entry[2]
            if price < touch if buy else price > touch:
                break
            heapq.heappop(heap)
            if not self._is_live(entry):
                orders.stale -= 1
                continue
            order = self._live[entry[3]][0]
            quantity = order.remaining if depth is None else depth.take(price, order.remaining)
            if not quantity:
                # The depth within this limit is gone, and the next orders' limits
                # are no better: they cannot fill either.
                keep.append(entry)
                break
            after = replace(order, remaining=order.remaining - quantity)
            events.append(RestingFill(after, make_fill(price, quantity, fee_bps, Liquidity.MAKER)))
            if after.remaining:
                self._live[order.id] = (after, entry[1])
                keep.append(entry)
            else:
                del self._live[order.id]
                orders.live -= 1
        for entry in keep:
            heapq.heappush(heap, entry)

    def _trigger(
        self,
        orders: _SymbolOrders,
        heap: list[_Entry],
        side: OrderSide,
        last: Decimal,
        events: list[MarketEvent],
    ) -> None:
        buy = side is OrderSide.BUY
        while heap:
            entry = heap[0]
            stop = entry[2]
            if stop > last if buy else stop < last:
                break
            heapq.heappop(heap)
            if not self._is_live(entry):
                orders.stale -= 1
                continue
            order = self._live.pop(entry[3])[0]
            orders.live -= 1
            events.append(StopTriggered(trigger_stop(order), stop, last))
