"""An order executed as taker against a book: pure, deterministic, `Decimal` only.

The engine's vocabulary (`Order`, `Fill`, `Execution`) and the taker's rules; the
resting side is services/paper_trading/matching.py, which re-exports all of this for
its callers. The book a taker walks is the venue's (services/paper_trading/liquidity.py):
what the market shows minus what paper orders took and the venue has not refilled.

A buy consumes the asks from the touch upward, a sell the bids downward; every level
touched is one fill at that level's price, so size moves the price and a thin book
fills partially. A limit caps the walk (a buy takes levels priced <= its limit, a sell
levels >= its limit).

- market: whatever its time in force, the part the book cannot fill is cancelled; FOK
  makes it all or nothing over the whole book.
- limit GTC, DAY or GTD: takes what crosses, up to its limit, then the rest rests (the
  caller adds it to `OrderIndex`); IOC cancels the rest; FOK trades only when the whole
  quantity is available within the limit, otherwise nothing trades (REJECTED).
- post-only limit: rests whole, or, when anything in the book is within its limit, is
  REJECTED with nothing traded; `Execution.rejection` says which rule refused it.

Stops trigger on the price their `stop_trigger` names (last, bid or ask): a buy when it
is >= the stop, a sell when <= the stop; `trigger_stop` converts them (stop -> market,
stop_limit -> limit at its limit price, same time in force).

Fees: `fee = notional * bps / 10000` on every fill, rounded ROUND_HALF_UP to
`FEE_QUANTUM` (1e-8 of the quote currency). Arithmetic runs in `MONEY_CONTEXT` (40
significant digits, so prices times quantities stay exact) whatever the caller's
thread context is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext
from enum import StrEnum

from connectors.base import BookLevel, OrderBook
from models.enums import Liquidity, OrderSide, OrderType, StopTrigger, TimeInForce
from services.paper_trading.liquidity import MONEY_CONTEXT, Taken, slot_setters

FEE_QUANTUM = Decimal("0.00000001")
# The average fill price is a quotient that rarely terminates: 28 significant digits,
# Python's default precision, is plenty for display; the ledger uses the fills' notional.
AVERAGE_PRICE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)

_ZERO = Decimal(0)
_BPS = Decimal(10000)


class Outcome(StrEnum):
    """What happened to an order executed as taker."""

    FILLED = "filled"  # nothing left
    RESTING = "resting"  # GTC, DAY or GTD limit: the rest (maybe all of it) rests
    CANCELLED = "cancelled"  # market or IOC: the rest is cancelled, fills are kept
    REJECTED = "rejected"  # nothing traded: see `Execution.rejection`


class Rejection(StrEnum):
    """Why an execution was REJECTED."""

    FILL_OR_KILL = "fill_or_kill"  # the book could not fill the whole quantity
    POST_ONLY = "post_only"  # the limit would have taken liquidity


NEEDS_LIMIT = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
NEEDS_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
RESTS = frozenset({TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD})  # a limit rests
EXPIRES = frozenset({TimeInForce.DAY, TimeInForce.GTD})  # an order needs expires_at


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
    expires_at: datetime | None = None  # DAY (the caller sets the day's end) and GTD
    post_only: bool = False
    stop_trigger: StopTrigger = StopTrigger.LAST

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"order {self.id}: quantity must be positive")
        if not _ZERO <= self.remaining <= self.quantity:
            raise ValueError(f"order {self.id}: remaining must be within [0, quantity]")
        _check_price(self, "limit_price", self.limit_price, self.order_type in NEEDS_LIMIT)
        _check_price(self, "stop_price", self.stop_price, self.order_type in NEEDS_STOP)
        _check_options(self)

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


def _check_options(order: Order) -> None:
    if order.post_only and (
        order.order_type not in NEEDS_LIMIT or order.time_in_force not in RESTS
    ):
        raise ValueError(f"order {order.id}: only a resting limit order can be post-only")
    if order.stop_trigger != StopTrigger.LAST and order.order_type not in NEEDS_STOP:
        raise ValueError(f"order {order.id}: only a stop takes a stop_trigger")
    if order.expires_at is None:
        if order.time_in_force == TimeInForce.GTD:
            raise ValueError(f"order {order.id}: a GTD order needs an expires_at")
    elif order.time_in_force not in EXPIRES:
        raise ValueError(f"order {order.id}: only DAY and GTD orders take an expires_at")
    elif order.expires_at.utcoffset() is None:
        raise ValueError(f"order {order.id}: expires_at must be timezone-aware")


_ORDER_FIELDS = tuple(field.name for field in fields(Order))
_new_order = object.__new__
_set = object.__setattr__


(
    _o_id,
    _o_account,
    _o_symbol,
    _o_side,
    _o_type,
    _o_tif,
    _o_quantity,
    _o_remaining,
    _o_limit,
    _o_stop,
    _o_expires,
    _o_post_only,
    _o_trigger,
) = slot_setters(Order, *_ORDER_FIELDS)


def with_remaining(order: Order, remaining: Decimal, **changes: object) -> Order:
    """`replace(order, remaining=..., **changes)` on the hot path of fills and
    triggers: the fields copied from a valid order are not checked again, but the one
    that moves is (remaining within [0, quantity]), so a bug never books past it."""
    if not _ZERO <= remaining <= order.quantity:
        raise ValueError(f"order {order.id}: remaining must be within [0, quantity]")
    if changes:
        copy: Order = _new_order(Order)
        for name in _ORDER_FIELDS:
            _set(copy, name, getattr(order, name))
        _set(copy, "remaining", remaining)
        for name, value in changes.items():
            _set(copy, name, value)
        return copy
    copy = _new_order(Order)
    _o_id(copy, order.id)
    _o_account(copy, order.account_id)
    _o_symbol(copy, order.symbol)
    _o_side(copy, order.side)
    _o_type(copy, order.order_type)
    _o_tif(copy, order.time_in_force)
    _o_quantity(copy, order.quantity)
    _o_remaining(copy, remaining)
    _o_limit(copy, order.limit_price)
    _o_stop(copy, order.stop_price)
    _o_expires(copy, order.expires_at)
    _o_post_only(copy, order.post_only)
    _o_trigger(copy, order.stop_trigger)
    return copy


@dataclass(frozen=True, slots=True)
class Fill:
    price: Decimal
    quantity: Decimal
    notional: Decimal
    fee: Decimal
    liquidity: Liquidity


_multiply = MONEY_CONTEXT.multiply
# bps -> bps / 10000, exact: a fee is then one product, rounded as the quotient was.
_rates: dict[Decimal, Decimal] = {}


def _rate(bps: Decimal) -> Decimal | None:
    rate = _rates.get(bps)
    if rate is None:
        if len(bps.as_tuple().digits) > MONEY_CONTEXT.prec:
            return None  # not exact as a rate: fee_for divides
        if len(_rates) >= 64:
            _rates.clear()
        rate = _rates[bps] = bps.scaleb(-4, MONEY_CONTEXT)
    return rate


def fee_for(notional: Decimal, bps: Decimal) -> Decimal:
    """`notional * bps / 10000`, rounded ROUND_HALF_UP to FEE_QUANTUM."""
    ctx = MONEY_CONTEXT
    rate = _rate(bps)
    # notional * (bps / 10000) rounds to 40 digits exactly as (notional * bps) did,
    # and the division by a power of ten is exact: the same value either way.
    exact = (
        _multiply(notional, rate)
        if rate is not None
        else ctx.divide(_multiply(notional, bps), _BPS)
    )
    return exact.quantize(FEE_QUANTUM, ROUND_HALF_UP, ctx)


_f_price, _f_quantity, _f_notional, _f_fee, _f_liquidity = slot_setters(
    Fill, "price", "quantity", "notional", "fee", "liquidity"
)


def make_fill(price: Decimal, quantity: Decimal, bps: Decimal, liquidity: Liquidity) -> Fill:
    """One fill with its exact notional and its rounded fee."""
    notional = _multiply(price, quantity)
    rate = _rates.get(bps)
    if rate is None:
        fee = fee_for(notional, bps)
    else:  # fee_for, inlined
        fee = _multiply(notional, rate).quantize(FEE_QUANTUM, ROUND_HALF_UP, MONEY_CONTEXT)
    fill: Fill = _new_order(Fill)
    _f_price(fill, price)
    _f_quantity(fill, quantity)
    _f_notional(fill, notional)
    _f_fee(fill, fee)
    _f_liquidity(fill, liquidity)
    return fill


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
            if level.quantity <= _ZERO:
                continue
            take = min(left, level.quantity)
            fills.append(BookLevel(level.price, take))
            notional += level.price * take
            left -= take
        filled = quantity - left
    return BookWalk(tuple(fills), filled, left, notional)


@dataclass(frozen=True, slots=True)
class Execution:
    """An order executed as taker; `order.remaining` is what rests, or what was
    cancelled (CANCELLED, REJECTED). `taken` is the venue depth it took, set by
    booking.TakerBooks so that the depth can be given back."""

    order: Order
    fills: tuple[Fill, ...]
    outcome: Outcome
    rejection: Rejection | None = None
    taken: Taken | None = None

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


_e_order, _e_fills, _e_outcome, _e_rejection, _e_taken = slot_setters(
    Execution, "order", "fills", "outcome", "rejection", "taken"
)


def _would_take(order: Order, book: OrderBook) -> bool:
    buy = order.side is OrderSide.BUY
    limit = order.limit_price
    for level in book.asks if buy else book.bids:
        if limit is not None and (level.price > limit if buy else level.price < limit):
            return False
        if level.quantity > 0:
            return True
    return False


def execute(order: Order, book: OrderBook, *, taker_fee_bps: Decimal) -> Execution:
    """Execute a market or limit order against `book` as taker (semantics above)."""
    if order.order_type in NEEDS_STOP:
        raise ValueError(f"order {order.id}: a stop executes only once triggered")
    if order.symbol != book.symbol:
        raise ValueError(f"order {order.id} is for {order.symbol}, the book for {book.symbol}")
    if not order.remaining:
        raise ValueError(f"order {order.id} has nothing left to fill")
    if order.post_only:
        if _would_take(order, book):
            return Execution(order, (), Outcome.REJECTED, Rejection.POST_ONLY)
        return Execution(order, (), Outcome.RESTING)
    buy = order.side is OrderSide.BUY
    fills, left = _take(
        book.asks if buy else book.bids, buy, order.remaining, order.limit_price, taker_fee_bps
    )
    if order.time_in_force is TimeInForce.FOK and left:
        return Execution(order, (), Outcome.REJECTED, Rejection.FILL_OR_KILL)
    if not fills:
        after = order
    else:
        after = with_remaining(order, left)
    if not left:
        outcome = Outcome.FILLED
    elif order.order_type is OrderType.LIMIT and order.time_in_force in RESTS:
        outcome = Outcome.RESTING
    else:
        outcome = Outcome.CANCELLED
    execution: Execution = _new_order(Execution)
    _e_order(execution, after)
    _e_fills(execution, fills)
    _e_outcome(execution, outcome)
    _e_rejection(execution, None)
    _e_taken(execution, None)
    return execution


_subtract = MONEY_CONTEXT.subtract


def _take(
    levels: Sequence[BookLevel],
    buy: bool,
    quantity: Decimal,
    limit: Decimal | None,
    fee_bps: Decimal,
) -> tuple[tuple[Fill, ...], Decimal]:
    """`walk_book` making the taker fills as it goes: the fills, and what is left."""
    fills: list[Fill] = []
    left = quantity
    taker = Liquidity.TAKER
    for level in levels:
        price = level.price
        if limit is not None and (price > limit if buy else price < limit):
            break
        available = level.quantity
        if available <= _ZERO:
            continue
        if left <= available:  # min(left, available), as walk_book takes it
            fills.append(make_fill(price, left, fee_bps, taker))
            return tuple(fills), _subtract(left, left)  # zero, with walk_book's exponent
        fills.append(make_fill(price, available, fee_bps, taker))
        left = _subtract(left, available)
    return tuple(fills), left


def _trigger_price(
    order: Order, last: Decimal, bid: Decimal | None, ask: Decimal | None
) -> Decimal:
    trigger = order.stop_trigger
    price = last if trigger == StopTrigger.LAST else bid if trigger == StopTrigger.BID else ask
    if price is None:
        raise ValueError(f"order {order.id} triggers on the {trigger}, which was not given")
    return price


def stop_is_triggered(
    order: Order, last: Decimal, *, bid: Decimal | None = None, ask: Decimal | None = None
) -> bool:
    """A buy stop triggers when its trigger price (`order.stop_trigger`: last, bid or
    ask) is >= stop, a sell stop when it is <= stop."""
    if order.stop_price is None:
        raise ValueError(f"order {order.id} is not a stop")
    price = _trigger_price(order, last, bid, ask)
    return price >= order.stop_price if order.side is OrderSide.BUY else price <= order.stop_price


def trigger_stop(order: Order) -> Order:
    """The order a triggered stop becomes: stop -> market, stop_limit -> limit."""
    if order.order_type is OrderType.STOP:
        converted = OrderType.MARKET
    elif order.order_type is OrderType.STOP_LIMIT:
        converted = OrderType.LIMIT
    else:
        raise ValueError(f"order {order.id} is not a stop")
    copy = with_remaining(order, order.remaining)
    _o_type(copy, converted)
    _o_stop(copy, None)
    _o_trigger(copy, StopTrigger.LAST)
    return copy
