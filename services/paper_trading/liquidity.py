"""The venue's book as paper orders leave it: pure, deterministic, `Decimal` only.

Every market step the external book of a symbol arrives fresh. The venue remembers,
per side and price, what paper orders took there (`consumed`); what anyone can trade
at a level is `max(0, external quantity - consumed)`. Both the takers
(booking.TakerBooks) and the resting limits (matching.OrderIndex) draw on that one
remaining depth, so no quantity is traded twice within a step, whoever came first.

Recovery. `recovery` is the share of the taken depth the venue refills per step, in
(0, 1]. What paper orders took at a price k steps after it last changed there is still
consumed to `floor(amount * (1 - recovery) ** k)` to the quantum (the symbol's
quantity step); a new take adds to what is left and starts over. 1 refills everything
at the next step (the fresh book every step); 0.5 halves what is missing each step.
Rounding down drops remainders below one quantum, so every consumed amount reaches
zero in finitely many steps; fully recovered prices are forgotten (`_SWEEP_STEPS`).
A step is one new book of the symbol (`advance`).

Queue position. A paper limit resting at price P joins the `Queue` of paper orders at
P on its side (bids for a buy), behind the displayed quantity there: queue ahead = what
the venue shows at exactly P on that side when it joins (0 when P is not displayed,
e.g. inside the spread or between levels). Paper orders at one price keep time
priority among themselves. The queue ahead shrinks by every quantity that trades at P
on its side (paper takers hitting P, and the opposing depth crossing P, which goes
first to the queue ahead, then to the paper orders). At the end of every step (applied
when the next book arrives) it is capped at what the level then shows: when P is
displayed, or is inside the displayed range but empty (0), queue ahead = min(queue
ahead, displayed quantity). What left the level (cancelled or traded unseen) counts as
ahead of us only as far as it must for the queue to fit in what is shown: the least
favourable reading for the paper order. Beyond the deepest displayed level
the venue says nothing, and the queue ahead stays. An order that joins while the venue
has no book yet for its symbol (after a restart, the index reloads before the first
tick) takes as queue ahead the displayed quantity at P in the first book that arrives.

Each queue keeps one counter, `traded`, of what traded at its price; an order's mark
is the value `traded` must reach before the quantity ahead of it is gone, so a trade
at P is one addition whatever the number of orders queued there.

Give-back. An order refused after it took depth (funds, a failed transaction) returns
it: the same step, exactly what it took (and the queues at those prices get that
quantity back ahead of them); k steps later, what is left of it, `taken * (1 -
recovery)^k` rounded down to the quantum, never more than is still consumed there, so
the venue never shows more than the external book.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

from connectors.base import BookLevel, OrderBook
from models.enums import OrderSide

MONEY_CONTEXT = Context(
    prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
DEFAULT_QUANTUM = Decimal("0.00000001")

_ZERO = Decimal(0)
_ONE = Decimal(1)
BIDS, ASKS = 0, 1  # the sides of a book, as `Queue.side` and `VenueBook.join` take them
_Consumed = dict[Decimal, tuple[Decimal, int]]
# Every this many steps, a venue book forgets the consumed depth that fully recovered.
_SWEEP_STEPS = 64


def slot_setters(cls: type, *names: str) -> tuple[Callable[[object, object], None], ...]:
    """The slot setters of a frozen slotted dataclass, for constructors on the hot path:
    a generated frozen `__init__` pays one `object.__setattr__` per field, about twice
    the cost of the setter itself. Nothing is validated: the caller builds valid values."""
    return tuple(cls.__dict__[name].__set__ for name in names)


_add = MONEY_CONTEXT.add
_subtract = MONEY_CONTEXT.subtract
_multiply = MONEY_CONTEXT.multiply
_new = object.__new__
_level_price, _level_quantity = slot_setters(BookLevel, "price", "quantity")


def _level(price: Decimal, quantity: Decimal) -> BookLevel:
    """`BookLevel(price, quantity)` on the hot path (slot_setters)."""
    level: BookLevel = _new(BookLevel)
    _level_price(level, price)
    _level_quantity(level, quantity)
    return level


def _side(book_side: OrderSide) -> int:
    return BIDS if book_side is OrderSide.BUY else ASKS


def _is_prefix(view: Sequence[BookLevel], levels: Sequence[BookLevel]) -> bool:
    """Whether `levels` is what a walk from the touch of `view` takes: whole levels,
    then part (or all) of the next one."""
    count = len(levels)
    if not count or count > len(view):
        return False
    for i, level in enumerate(levels):
        shown = view[i]
        if level.price != shown.price or not _ZERO < level.quantity <= shown.quantity:
            return False
        if level.quantity < shown.quantity and i != count - 1:
            return False
    return True


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Taken:
    """Depth paper flow took from one side of a symbol's book (`side`: BUY is the bids,
    SELL the asks) in market step `step`; what `VenueBook.give_back` returns."""

    symbol: str
    side: OrderSide
    levels: tuple[BookLevel, ...]
    step: int


_taken_symbol, _taken_side, _taken_levels, _taken_step = slot_setters(
    Taken, "symbol", "side", "levels", "step"
)


def make_taken(symbol: str, side: OrderSide, levels: tuple[BookLevel, ...], step: int) -> Taken:
    """`Taken(symbol, side, levels, step)` on the hot path (slot_setters)."""
    taken: Taken = _new(Taken)
    _taken_symbol(taken, symbol)
    _taken_side(taken, side)
    _taken_levels(taken, levels)
    _taken_step(taken, step)
    return taken


class Queue:
    """The paper limits resting at one price on one side, in time priority.

    `marks` maps each order id (insertion order is time priority) to the value of
    `traded` at which the displayed quantity ahead of it is gone; marks never decrease
    along the queue, so the last one tells whether anybody still waits.
    """

    __slots__ = ("marks", "price", "side", "traded")

    def __init__(self, side: int, price: Decimal) -> None:
        self.side = side
        self.price = price
        self.traded = _ZERO
        self.marks: dict[str, Decimal] = {}

    def ahead(self, order_id: str) -> Decimal:
        """The displayed quantity still ahead of the order at this price."""
        return max(_ZERO, MONEY_CONTEXT.subtract(self.marks[order_id], self.traded))

    def _cap(self, cap: Decimal) -> None:
        marks = self.marks
        for order_id in reversed(marks):
            if marks[order_id] <= cap:
                break
            marks[order_id] = cap


class Depth:
    """One side's available depth in a step, handed out from the touch to crossed resting
    orders in priority order (their limits only get worse, so one cursor serves them
    all); `commit` records what it handed out as consumed in the venue book."""

    __slots__ = ("_book", "_buy", "_index", "_left", "_levels", "_side")

    def __init__(
        self, levels: Sequence[BookLevel], *, buy: bool, book: VenueBook | None = None
    ) -> None:
        self._levels = levels
        self._buy = buy  # the crossed orders buy: the levels are asks
        self._book = book
        self._side = ASKS if buy else BIDS
        self._index = 0
        self._left = levels[0].quantity if levels else _ZERO

    def take(self, limit: Decimal, wanted: Decimal, log: list[BookLevel] | None = None) -> Decimal:
        """Up to `wanted` from the levels at or better than `limit`; each level's part is
        appended to `log` when one is given. Exact (MONEY_CONTEXT) whatever the thread's."""
        taken = _ZERO
        levels = self._levels
        count = len(levels)
        index, left, buy = self._index, self._left, self._buy
        while taken < wanted and index < count:
            level = levels[index]
            price = level.price
            if price > limit if buy else price < limit:
                break
            step = min(_subtract(wanted, taken), left)
            taken = _add(taken, step)
            left = _subtract(left, step)
            if log is not None and step > _ZERO:
                log.append(level if step == level.quantity else _level(price, step))
            if left == _ZERO:
                index += 1
                left = levels[index].quantity if index < count else _ZERO
        self._index, self._left = index, left
        return taken

    def commit(self) -> None:
        book = self._book
        if book is None:
            return
        levels, index, left = self._levels, self._index, self._left
        partial = index < len(levels) and left != levels[index].quantity
        if not index and not partial:
            return
        for level in levels[:index]:
            book._consume(self._side, level.price, level.quantity)
        rest = levels[index:]
        if partial:
            top = rest[0]
            book._consume(self._side, top.price, _subtract(top.quantity, left))
            rest = (_level(top.price, left), *rest[1:])
        book._set_view(self._side, tuple(rest))


class VenueBook:
    """One symbol's venue book: the latest external book, what paper orders took from it
    and has not recovered, and the queues of paper limits (module doc)."""

    __slots__ = (
        "_book",
        "_consumed",
        "_external",
        "_held_now",
        "_keep",
        "_pending",
        "_powers",
        "_queues",
        "_returned",
        "_shown",
        "_views",
        "_waiting",
        "_waiting_prices",
        "quantum",
        "step",
        "symbol",
    )

    def __init__(self, symbol: str, *, recovery: Decimal, quantum: Decimal) -> None:
        if not _ZERO < recovery <= _ONE:
            raise ValueError("recovery must be in (0, 1]")
        if quantum <= 0:
            raise ValueError("quantum must be positive")
        self.symbol = symbol
        self.quantum = quantum
        self.step = 0
        self._keep = MONEY_CONTEXT.subtract(_ONE, recovery)
        self._external: OrderBook | None = None
        # Per side, price -> (amount, step it was last changed): decayed when read.
        self._consumed: tuple[_Consumed, _Consumed] = ({}, {})
        # Per side, price -> what is consumed there in this step (read or changed).
        self._held_now: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
        self._powers = [_ONE]  # (1 - recovery) ** k
        self._views: list[tuple[BookLevel, ...] | None] = [None, None]
        # Per side, the external quantity at each displayed price (first level wins).
        self._shown: list[dict[Decimal, Decimal] | None] = [None, None]
        self._book: OrderBook | None = None
        self._queues: tuple[dict[Decimal, Queue], dict[Decimal, Queue]] = ({}, {})
        # Per side, queues whose last mark is above `traded` (someone still waits) by price,
        # and their prices ascending: a step caps those in the displayed range, no others.
        self._waiting: tuple[dict[Decimal, Queue], dict[Decimal, Queue]] = ({}, {})
        self._waiting_prices: tuple[list[Decimal], list[Decimal]] = ([], [])
        # Orders queued before the first book: placed when it arrives.
        self._pending: dict[tuple[Queue, str], None] = {}
        # What was given back, by identity: a second give-back of it is a no-op.
        self._returned: weakref.WeakValueDictionary[int, Taken] = weakref.WeakValueDictionary()

    @property
    def has_book(self) -> bool:
        return self._external is not None

    def advance(self, book: OrderBook) -> None:
        """The market stepped: cap the queues at what the old book showed, let the
        consumed depth recover, then install `book` as the external book."""
        if book.symbol != self.symbol:
            raise ValueError(f"the book is for {book.symbol}, the venue book for {self.symbol}")
        first = self._external is None
        if not first and (self._waiting_prices[BIDS] or self._waiting_prices[ASKS]):
            self._cap_queues()
        self._external = book
        self._views = [None, None]
        self._shown = [None, None]
        self._book = None
        self.step += 1
        self._held_now[BIDS].clear()
        self._held_now[ASKS].clear()
        if not self.step % _SWEEP_STEPS:
            self._sweep()
        if first and self._pending:
            self._place_pending()

    def _wait(self, queue: Queue) -> None:
        waiting = self._waiting[queue.side]
        if queue.price not in waiting:
            waiting[queue.price] = queue
            insort(self._waiting_prices[queue.side], queue.price)

    def _unwait(self, side: int, price: Decimal) -> None:
        del self._waiting[side][price]
        prices = self._waiting_prices[side]
        del prices[bisect_left(prices, price)]

    def _cap_queues(self) -> None:
        for side in (BIDS, ASKS):
            prices = self._waiting_prices[side]
            external = self._external_side(side)
            if not prices or not external:
                continue
            deepest = external[-1].price
            if side == BIDS:  # at or above the deepest bid
                within = prices[bisect_left(prices, deepest) :]
            else:  # at or below the deepest ask
                within = prices[: bisect_right(prices, deepest)]
            for price in within:
                queue = self._waiting[side][price]
                queue._cap(_add(queue.traded, self.available_at(side, price)))
                if queue.marks[next(reversed(queue.marks))] <= queue.traded:
                    self._unwait(side, price)

    def _held(self, side: int, price: Decimal) -> Decimal:
        """What is still consumed at `price`: floor(amount * (1 - recovery) ** age)."""
        now = self._held_now[side]
        held = now.get(price)
        if held is not None:
            return held
        consumed = self._consumed[side]
        entry = consumed.get(price)
        if entry is None:
            return _ZERO
        held, since = entry
        age = self.step - since
        if age:
            held = self._decayed(held, age)
            if held == _ZERO:
                del consumed[price]
        now[price] = held
        return held

    def _decayed(self, amount: Decimal, age: int) -> Decimal:
        keep = self._keep
        if not keep:
            return _ZERO
        powers = self._powers
        while len(powers) <= age:
            powers.append(_multiply(powers[-1], keep))
        # Rounded down to a multiple of the quantum (a multiple keeps its digits).
        left = _multiply(amount, powers[age])
        rest = MONEY_CONTEXT.remainder(left, self.quantum)
        left = _subtract(left, rest) if rest else left
        return left if left > _ZERO else _ZERO

    def _sweep(self) -> None:
        """Forget what fully recovered at prices nobody looked at since (step just begun)."""
        step, keep, quantum, powers = self.step, self._keep, self.quantum, self._powers
        for consumed in self._consumed:
            oldest = step - min((since for _, since in consumed.values()), default=step)
            while len(powers) <= oldest:
                powers.append(_multiply(powers[-1], keep))
            # Gone once below one quantum: what `_decayed` would round down to zero.
            gone = [
                price
                for price, (amount, since) in consumed.items()
                if since != step and _multiply(amount, powers[step - since]) < quantum
            ]
            for price in gone:
                del consumed[price]

    def _place_pending(self) -> None:
        for queue, order_id in self._pending:
            if order_id in queue.marks:
                ahead = self.available_at(queue.side, queue.price)
                queue.marks[order_id] = _add(queue.traded, ahead)
                if ahead:
                    self._wait(queue)
        self._pending.clear()

    def _external_side(self, side: int) -> tuple[BookLevel, ...]:
        if self._external is None:
            return ()
        return self._external.bids if side == BIDS else self._external.asks

    def available_at(self, side: int, price: Decimal) -> Decimal:
        """What the venue shows at `price` on `side` (0 = bids, 1 = asks)."""
        shown = self._shown[side]
        if shown is None:
            levels = self._external_side(side)
            shown = self._shown[side] = {level.price: level.quantity for level in levels[::-1]}
        quantity = shown.get(price)
        if quantity is None:
            return _ZERO
        left = _subtract(quantity, self._held(side, price)) if self._consumed[side] else quantity
        return left if left > _ZERO else _ZERO

    def available(self, book_side: OrderSide, price: Decimal) -> Decimal:
        """What the venue shows at `price` on `book_side` (BUY: the bids)."""
        return self.available_at(_side(book_side), price)

    def consumed(self, book_side: OrderSide, price: Decimal) -> Decimal:
        """What paper orders took at `price` on `book_side` and has not recovered."""
        return self._held(_side(book_side), price)

    def levels(self, side: int) -> tuple[BookLevel, ...]:
        """The levels of `side` with something available, best first."""
        view = self._views[side]
        if view is None:
            external = self._external_side(side)
            if not self._consumed[side] and all(level.quantity > _ZERO for level in external):
                view = external
            else:
                view = tuple(self._left_of(side, external))
            self._views[side] = view
        return view

    def _left_of(self, side: int, external: Sequence[BookLevel]) -> list[BookLevel]:
        consumed = self._consumed[side]
        held = self._held
        left = []
        for level in external:
            price = level.price
            if price not in consumed:
                if level.quantity > _ZERO:
                    left.append(level)
                continue
            quantity = _subtract(level.quantity, held(side, price))
            if quantity > _ZERO:
                left.append(level if quantity == level.quantity else _level(price, quantity))
        return left

    def view(self) -> OrderBook:
        """The book a taker sees now: the external book minus what is consumed."""
        book = self._book
        if book is None:
            external = self._external
            if external is None:
                raise ValueError(f"no book yet for {self.symbol}")
            book = self._book = OrderBook(
                self.symbol, self.levels(BIDS), self.levels(ASKS), external.timestamp
            )
        return book

    def _set_view(self, side: int, levels: tuple[BookLevel, ...] | None) -> None:
        self._views[side] = levels
        self._book = None

    def _consume(self, side: int, price: Decimal, quantity: Decimal) -> None:
        held = self._held_now[side][price] = _add(self._held(side, price), quantity)
        self._consumed[side][price] = (held, self.step)
        queue = self._queues[side].get(price)
        if queue is not None:
            queue.traded = _add(queue.traded, quantity)

    def take(self, book_side: OrderSide, levels: Sequence[BookLevel]) -> Taken:
        """Consume `levels` from `book_side`; raises ValueError (and takes nothing) when
        one asks for more than is available there."""
        side = _side(book_side)
        view = self.levels(side)
        prefix = _is_prefix(view, levels)
        if not prefix:
            wanted: dict[Decimal, Decimal] = {}
            for level in levels:
                if level.quantity <= 0:
                    raise ValueError("a taken quantity must be positive")
                wanted[level.price] = _add(wanted.get(level.price, _ZERO), level.quantity)
            if any(q > self.available_at(side, p) for p, q in wanted.items()):
                raise ValueError(f"more than the {self.symbol} book shows was taken")
        for level in levels:
            self._consume(side, level.price, level.quantity)
        if prefix:
            count = len(levels)
            rest = view[count:]
            last, shown = levels[-1], view[count - 1]
            if last.quantity < shown.quantity:
                left = _subtract(shown.quantity, last.quantity)
                rest = (_level(shown.price, left), *rest)
            self._set_view(side, rest)
        else:
            self._set_view(side, None)
        return make_taken(self.symbol, book_side, tuple(levels), self.step)

    def give_back(self, taken: Taken) -> None:
        """Return depth an order took and did not keep (module doc); once: giving the
        same `taken` back again changes nothing."""
        if taken.symbol != self.symbol:
            raise ValueError(f"depth of {taken.symbol} given back to {self.symbol}")
        steps = self.step - taken.step
        if steps < 0:
            raise ValueError("depth given back before it was taken")
        if self._returned.get(id(taken)) is taken:
            return
        self._returned[id(taken)] = taken
        side = _side(taken.side)
        consumed, now = self._consumed[side], self._held_now[side]
        for level in taken.levels:
            held = self._held(side, level.price)
            amount = self._decayed(level.quantity, steps) if steps else level.quantity
            amount = min(amount, held)
            if amount <= 0:
                continue
            left = now[level.price] = _subtract(held, amount)
            if left > 0:
                consumed[level.price] = (left, self.step)
            else:
                del consumed[level.price]
            queue = self._queues[side].get(level.price)
            if not steps and queue is not None:
                queue.traded = _subtract(queue.traded, amount)
                if queue.marks[next(reversed(queue.marks))] > queue.traded:
                    self._wait(queue)
        self._set_view(side, None)

    def depth(self, book_side: OrderSide) -> Depth:
        """A cursor over `book_side` for the resting orders it crosses (the asks for
        buys); `Depth.commit` consumes what it handed out."""
        side = _side(book_side)
        return Depth(self.levels(side), buy=side == ASKS, book=self)

    def queue_at(self, side: int, price: Decimal) -> Queue | None:
        """The queue of paper limits at `price` on `side`, if anyone rests there."""
        return self._queues[side].get(price)

    def join(self, side: int, price: Decimal, order_id: str) -> Queue:
        """Queue a paper limit at `price` on `side` behind what is displayed there."""
        queues = self._queues[side]
        queue = queues.get(price)
        if queue is None:
            queue = queues[price] = Queue(side, price)
        elif order_id in queue.marks:
            raise ValueError(f"order {order_id} is already queued at {price}")
        if self._external is None:
            mark = queue.traded
            self._pending[queue, order_id] = None
        else:
            mark = _add(queue.traded, self.available_at(side, price))
            if queue.marks:
                # The level shows no more than `mark - traded`: nobody is further back.
                queue._cap(mark)
            if mark > queue.traded:
                self._wait(queue)
        queue.marks[order_id] = mark
        return queue

    def leave(self, queue: Queue, order_id: str) -> bool:
        """Remove the order from its queue; True when the queue is now empty (dropped)."""
        del queue.marks[order_id]
        if self._pending:
            self._pending.pop((queue, order_id), None)
        if queue.marks:
            return False
        queues = self._queues[queue.side]
        if queues.get(queue.price) is queue:
            del queues[queue.price]
        if self._waiting[queue.side].get(queue.price) is queue:
            self._unwait(queue.side, queue.price)
        return True


class Venue:
    """Every symbol's `VenueBook`, with one recovery rate; `quantum` is the default
    quantity step of a symbol that `advance` is not told one for."""

    def __init__(self, *, recovery: Decimal = _ONE, quantum: Decimal = DEFAULT_QUANTUM) -> None:
        if not _ZERO < recovery <= _ONE:
            raise ValueError("recovery must be in (0, 1]")
        if quantum <= 0:
            raise ValueError("quantum must be positive")
        self.recovery = recovery
        self.quantum = quantum
        self._books: dict[str, VenueBook] = {}

    def get(self, symbol: str) -> VenueBook | None:
        return self._books.get(symbol)

    def book(self, symbol: str) -> VenueBook:
        """The symbol's venue book, created (with no external book yet) if needed."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = VenueBook(
                symbol, recovery=self.recovery, quantum=self.quantum
            )
        return book

    def advance(self, book: OrderBook, *, quantum: Decimal | None = None) -> VenueBook:
        """A market step of `book.symbol` (`quantum`: its quantity step, if known)."""
        venue_book = self.book(book.symbol)
        if quantum is not None:
            if quantum <= 0:
                raise ValueError("quantum must be positive")
            venue_book.quantum = quantum
        venue_book.advance(book)
        return venue_book

    def give_back(self, taken: Taken) -> None:
        self.book(taken.symbol).give_back(taken)
