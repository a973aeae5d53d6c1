"""The paper exchange's resting orders: pure, deterministic, `Decimal` only.

No database, no I/O, no clock: the paper trading service feeds it the market's steps
and applies what comes out in transactions of its own (services/paper_trading/fills.py).
Orders, fills and the taker's rules are in services/paper_trading/taker.py (re-exported
here); the venue's book and its queues in services/paper_trading/liquidity.py.

A resting buy limit fills when the ask is at or below its price, a sell limit when the
bid is at or above it, always at its own limit price: the flow that moved the market
through the order would have traded with it there, and no price improvement is
invented. Quantity, with the venue's book for the symbol: the available opposing depth
at or better than the limit, handed out in price-time priority, the displayed quantity
queued ahead of each order at its price served first (liquidity.py); what makers take
is gone for the takers of the step, and the reverse. With a snapshot `book` instead (no
venue book for the symbol): the same without queues, nothing carried to the next call.
With neither: the whole remaining quantity. A partly filled order keeps its priority.

Stops trigger on the price their `stop_trigger` names (a buy when it is >= the stop, a
sell when <= it), leave the index and come back converted (`trigger_stop`) for the
caller to execute against the book. Orders with an `expires_at` (DAY, GTD) leave
through `OrderIndex.expire`. Resting fills carry the maker rate given to `on_market`.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from connectors.base import BookLevel, OrderBook, Ticker
from models.enums import Liquidity, OrderSide, OrderType, StopTrigger
from services.paper_trading.liquidity import (
    ASKS,
    BIDS,
    MONEY_CONTEXT,
    Depth,
    Queue,
    Taken,
    Venue,
    VenueBook,
    make_taken,
    slot_setters,
)
from services.paper_trading.taker import (
    AVERAGE_PRICE_CONTEXT,
    EXPIRES,
    FEE_QUANTUM,
    NEEDS_STOP,
    RESTS,
    BookWalk,
    Execution,
    Fill,
    Order,
    Outcome,
    Rejection,
    execute,
    fee_for,
    make_fill,
    stop_is_triggered,
    trigger_stop,
    walk_book,
    with_remaining,
)

__all__ = [
    "AVERAGE_PRICE_CONTEXT",
    "FEE_QUANTUM",
    "MONEY_CONTEXT",
    "BookWalk",
    "Execution",
    "Fill",
    "MarketEvent",
    "Order",
    "OrderIndex",
    "Outcome",
    "Rejection",
    "RestingFill",
    "StopTriggered",
    "execute",
    "fee_for",
    "make_fill",
    "stop_is_triggered",
    "trigger_stop",
    "walk_book",
]

# Cancelled stops leave stale heap entries (lazy deletion); a symbol's stop heaps are
# rebuilt once its stale entries outnumber its live orders and this floor.
_COMPACT_FLOOR = 256
_TRIGGERS = {StopTrigger.LAST: 0, StopTrigger.BID: 1, StopTrigger.ASK: 2}


@dataclass(frozen=True, slots=True)
class RestingFill:
    """A resting limit order traded as maker; `order` is the order after the fill;
    `taken` the venue depth the fill drew on (None without a venue book)."""

    order: Order
    fill: Fill
    taken: Taken | None = None


@dataclass(frozen=True, slots=True)
class StopTriggered:
    """A stop left the index; `order` is what it became, to execute against the book.
    `last_price` is the price that triggered it (the last, bid or ask: its trigger)."""

    order: Order
    stop_price: Decimal
    last_price: Decimal


MarketEvent = RestingFill | StopTriggered
_ZERO = Decimal(0)
_add = MONEY_CONTEXT.add
_subtract = MONEY_CONTEXT.subtract
_new = object.__new__
_r_order, _r_fill, _r_taken = slot_setters(RestingFill, "order", "fill", "taken")


def _resting_fill(order: Order, fill: Fill, taken: Taken | None) -> RestingFill:
    event: RestingFill = _new(RestingFill)
    _r_order(event, order)
    _r_fill(event, fill)
    _r_taken(event, taken)
    return event


# Resting limits are grouped by price into venue queues, whose prices the index keeps
# sorted per side (ascending: the best bid is the last, the best ask the first). A stop
# entry is (sort key, sequence, stop price, order id); a popped stop is gone from
# `_live`: stale entries are skipped.
_Stop = tuple[Decimal, int, Decimal, str]
_Live = tuple[Order, int, Queue | None]


class _SymbolOrders:
    """One symbol's price levels and stop heaps: the best level and the top of each
    heap are the first orders a move would reach."""

    __slots__ = ("levels", "live", "stale", "stops")

    def __init__(self) -> None:
        # The prices of the queues of buys and of sells, ascending.
        self.levels: tuple[list[Decimal], list[Decimal]] = ([], [])
        # Buy stops on last, bid, ask (lowest first), then sell stops (highest first).
        self.stops: tuple[list[_Stop], ...] = tuple([] for _ in range(6))
        self.live = 0
        self.stale = 0


class OrderIndex:
    """Resting limit orders and untriggered stops, per symbol, in price-time priority.

    Limits rest in their venue's queues (one per price and side), reached through a
    sorted list of prices per side (bisect; a price leaves with its queue's last
    order); stops in one heap per side and trigger price, with lazy deletion. A market
    update looks at the best price and the top of each heap when nothing is crossed,
    and touches only the orders it crosses or triggers. `venue` is the one the takers
    draw on (booking.TakerBooks); without it the index keeps its own, which has no
    books, so fills are priced from the `book` given to `on_market`, or are whole.
    """

    def __init__(self, venue: Venue | None = None) -> None:
        self._venue = venue if venue is not None else Venue()
        self._symbols: dict[str, _SymbolOrders] = {}
        self._live: dict[str, _Live] = {}
        self._sequence = itertools.count()
        self._expiry: list[tuple[datetime, int, str]] = []
        self._expiry_stale = 0

    @property
    def venue(self) -> Venue:
        return self._venue

    def use_venue(self, venue: Venue) -> None:
        """Queue and fill on `venue` from now on (the takers'); only while empty."""
        if self._live:
            raise ValueError("the index already holds orders: it cannot change venue")
        self._venue = venue
        self._symbols = {}

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

    def queue_ahead(self, order_id: str) -> Decimal | None:
        """The displayed quantity queued ahead of a resting limit; None if not one."""
        live = self._live.get(order_id)
        if live is None or live[2] is None:
            return None
        return live[2].ahead(order_id)

    @staticmethod
    def _check(order: Order) -> None:
        if not order.remaining:
            raise ValueError(f"order {order.id} has nothing left to fill")
        if order.order_type is OrderType.LIMIT:
            if order.time_in_force not in RESTS:
                raise ValueError(f"order {order.id}: only GTC, DAY and GTD limit orders rest")
        elif order.order_type not in NEEDS_STOP:
            raise ValueError(f"order {order.id}: a {order.order_type} order cannot rest")
        if order.time_in_force in EXPIRES and order.expires_at is None:
            raise ValueError(f"order {order.id}: a {order.time_in_force} order needs expires_at")

    def add(self, order: Order) -> None:
        """Rest a limit order behind what the venue shows at its price, or hold a
        stop; later adds have lower time priority."""
        if order.id in self._live:
            raise ValueError(f"order {order.id} is already in the index")
        self._check(order)
        orders = self._symbols.get(order.symbol)
        if orders is None:
            orders = self._symbols[order.symbol] = _SymbolOrders()
        sequence = next(self._sequence)
        buy = order.side is OrderSide.BUY
        if order.limit_price is not None and order.order_type is OrderType.LIMIT:
            price = order.limit_price
            side = BIDS if buy else ASKS
            queue = self._venue.book(order.symbol).join(side, price, order.id)
            if len(queue.marks) == 1:  # a new price level
                insort(orders.levels[side], price)
            self._live[order.id] = (order, sequence, queue)
        elif order.stop_price is not None:
            stop = order.stop_price
            heap = orders.stops[(0 if buy else 3) + _TRIGGERS[order.stop_trigger]]
            heapq.heappush(heap, (stop if buy else -stop, sequence, stop, order.id))
            self._live[order.id] = (order, sequence, None)
        if order.expires_at is not None:
            heapq.heappush(self._expiry, (order.expires_at, sequence, order.id))
        orders.live += 1

    def cancel(self, order_id: str) -> bool:
        """Remove an order; False when it is not in the index (filled, triggered, unknown)."""
        return self._remove(order_id) is not None

    def _remove(self, order_id: str, *, expiring: bool = False) -> Order | None:
        live = self._live.pop(order_id, None)
        if live is None:
            return None
        order, _, queue = live
        orders = self._symbols[order.symbol]
        orders.live -= 1
        if queue is None:
            orders.stale += 1
        elif self._venue.book(order.symbol).leave(queue, order_id):
            prices = orders.levels[queue.side]
            del prices[bisect_left(prices, queue.price)]
        if order.expires_at is not None and not expiring:
            self._expiry_stale += 1
        if orders.stale > orders.live and (orders.stale >= _COMPACT_FLOOR or not orders.live):
            self._compact(orders)
        return order

    def _compact(self, orders: _SymbolOrders) -> None:
        for stops in orders.stops:
            stops[:] = [entry for entry in stops if self._is_live(entry[3], entry[1])]
            heapq.heapify(stops)
        orders.stale = 0

    def _is_live(self, order_id: str, sequence: int) -> bool:
        live = self._live.get(order_id)
        return live is not None and live[1] == sequence

    def _gone(self, order: Order) -> None:
        """An order left by a fill or a trigger: its expiry entry is stale now."""
        if order.expires_at is not None:
            self._expiry_stale += 1
            heap = self._expiry
            if self._expiry_stale > len(heap) // 2 and self._expiry_stale >= _COMPACT_FLOOR:
                heap[:] = [entry for entry in heap if self._is_live(entry[2], entry[1])]
                heapq.heapify(heap)
                self._expiry_stale = 0

    def expire(self, now: datetime) -> list[Order]:
        """Remove and return the orders whose `expires_at` <= now, earliest first."""
        expired: list[Order] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, sequence, order_id = heapq.heappop(heap)
            if not self._is_live(order_id, sequence):
                self._expiry_stale -= 1
                continue
            order = self._remove(order_id, expiring=True)
            if order is not None:
                expired.append(order)
        return expired

    def reload(self, orders: Iterable[Order]) -> None:
        """Replace the contents with `orders`, given oldest first (their time priority).
        On a bad order nothing changes. A limit's queue ahead is what the venue shows
        at its price then (liquidity.py: with no book yet, the first book's)."""
        orders = list(orders)
        seen: set[str] = set()
        for order in orders:
            if order.id in seen:
                raise ValueError(f"order {order.id} is already in the index")
            seen.add(order.id)
            self._check(order)
        for order_id in list(self._live):
            self._remove(order_id)
        self._symbols, self._expiry, self._expiry_stale = {}, [], 0
        for order in orders:
            self.add(order)

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

        Events come buy fills, sell fills, then triggers (buys before sells), each in
        price-time priority. Filled and triggered orders leave the index; a partly
        filled one stays with its priority. With a venue book for the symbol, the
        fills draw on it and `book` must be None.
        """
        events: list[MarketEvent] = []
        orders = self._symbols.get(symbol)
        if orders is None:
            return events
        venue_book = self._venue.book(symbol)
        shared = venue_book.has_book
        if book is not None:
            if shared:
                raise ValueError(f"the index fills {symbol} from its venue's book")
            if book.symbol != symbol:
                raise ValueError(f"the book is for {book.symbol}, the update for {symbol}")
        buys, sells = orders.levels
        if buys and buys[-1] >= ask:
            depth = self._depth(venue_book, shared, book, OrderSide.SELL)
            self._fill(orders, BIDS, ask, maker_fee_bps, depth, venue_book, events)
        if sells and sells[0] <= bid:
            depth = self._depth(venue_book, shared, book, OrderSide.BUY)
            self._fill(orders, ASKS, bid, maker_fee_bps, depth, venue_book, events)
        # Most updates trigger nothing: look at the top of each heap before anything else.
        on_last, on_bid, on_ask, off_last, off_bid, off_ask = orders.stops
        if (
            (on_last and on_last[0][2] <= last)
            or (on_bid and on_bid[0][2] <= bid)
            or (on_ask and on_ask[0][2] <= ask)
            or (off_last and off_last[0][2] >= last)
            or (off_bid and off_bid[0][2] >= bid)
            or (off_ask and off_ask[0][2] >= ask)
        ):
            self._trigger(orders, (last, bid, ask), events)
        return events

    @staticmethod
    def _depth(
        venue_book: VenueBook, shared: bool, book: OrderBook | None, side: OrderSide
    ) -> Depth | None:
        """The depth crossed orders draw on: `side` of the venue book, or of `book`."""
        if shared:
            return venue_book.depth(side)
        if book is None:
            return None
        return Depth(book.bids if side is OrderSide.BUY else book.asks, buy=side is OrderSide.SELL)

    def _fill(
        self,
        orders: _SymbolOrders,
        side: int,
        touch: Decimal,
        fee_bps: Decimal,
        depth: Depth | None,
        venue_book: VenueBook,
        events: list[MarketEvent],
    ) -> None:
        prices = orders.levels[side]
        buy = side == BIDS
        while prices:
            price = prices[-1] if buy else prices[0]
            if price < touch if buy else price > touch:
                break
            queue = venue_book.queue_at(side, price)
            if queue is None:
                raise RuntimeError(f"no queue at {price}: the index and its venue disagree")
            if not self._fill_queue(orders, queue, fee_bps, depth, venue_book, events):
                # Someone at this price is left: the depth within it is gone, and the
                # next levels' limits are no better. The level keeps its place.
                break
            if buy:
                prices.pop()
            else:
                del prices[0]
        if depth is not None:
            depth.commit()

    def _fill_queue(
        self,
        orders: _SymbolOrders,
        queue: Queue,
        fee_bps: Decimal,
        depth: Depth | None,
        venue_book: VenueBook,
        events: list[MarketEvent],
    ) -> bool:
        """Fill the queue's orders in time priority, each after the displayed quantity
        ahead of it, until the depth within its price runs out; True when it emptied."""
        live = self._live
        price = queue.price
        shared = venue_book.has_book
        opposing = OrderSide.SELL if queue.side == BIDS else OrderSide.BUY
        maker = Liquidity.MAKER
        filled: list[str] = []
        for order_id, mark in queue.marks.items():
            order, sequence, _ = live[order_id]
            remaining = order.remaining
            taken = None
            if depth is None:
                quantity = remaining
            else:
                ahead = _subtract(mark, queue.traded)
                if ahead > _ZERO:
                    reached = depth.take(price, ahead)
                    queue.traded = _add(queue.traded, reached)
                    if reached < ahead:
                        break
                log: list[BookLevel] | None = [] if shared else None
                quantity = depth.take(price, remaining, log)
                if quantity == _ZERO:
                    break
                if log:
                    taken = make_taken(venue_book.symbol, opposing, tuple(log), venue_book.step)
            after = with_remaining(order, _subtract(remaining, quantity))
            events.append(_resting_fill(after, make_fill(price, quantity, fee_bps, maker), taken))
            if after.remaining != _ZERO:
                live[order_id] = (after, sequence, queue)
                break
            filled.append(order_id)
        for order_id in filled:
            order = live.pop(order_id)[0]
            orders.live -= 1
            self._gone(order)
            venue_book.leave(queue, order_id)
        return not queue.marks

    def _trigger(
        self,
        orders: _SymbolOrders,
        prices: tuple[Decimal, Decimal, Decimal],
        events: list[MarketEvent],
    ) -> None:
        fired: list[tuple[int, Decimal, int, StopTriggered]] = []
        live = self._live
        for kind, heap in enumerate(orders.stops):
            buy = kind < 3
            price = prices[kind % 3]
            while heap:
                key, sequence, stop, order_id = heap[0]
                if stop > price if buy else stop < price:
                    break
                heapq.heappop(heap)
                entry = live.get(order_id)
                if entry is None or entry[1] != sequence:
                    orders.stale -= 1
                    continue
                order = live.pop(order_id)[0]
                orders.live -= 1
                self._gone(order)
                fired.append(
                    (kind // 3, key, sequence, StopTriggered(trigger_stop(order), stop, price))
                )
        if len(fired) > 1:
            fired.sort(key=lambda item: item[:3])
        events.extend(item[3] for item in fired)
