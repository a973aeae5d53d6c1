"""Matching throughput on a realistic flow: book events per second, indexed vs a scan.

100,000 orders rest over 50 symbols (limits at seeded prices up to 2% from the touch,
stops and stop-limits on the last, bid or ask, some GTD), then market steps, one
symbol per step: the symbol's fresh 10-level book reaches the venue (consumed depth
recovering at --recovery per step, queues capped), the resting limits it crosses fill
as makers behind their queues, the stops it triggers execute as takers, then the
step's own flow: market orders that sweep levels, new limits joining the queues at
and near the touch (some marketable, their rest resting), a few cancels, and every
100 steps the GTD orders that are due expire. Makers and takers draw on the same
venue depth, as in the service.

A book event is one resting fill, one triggered stop, one expired order or one taker
fill (one per level a taker touches). Resting orders only looked at, or whose queue
shrank without a fill, are not counted: the rate is a floor.

The same run measures the real path (`Venue`, `OrderIndex`, `TakerBooks`) and a naive
reference written here, which scans every resting order every step and keeps each
order's queue ahead as a number, and checks on the first --check-steps steps that both
give identical events (same orders, prices, quantities, in the same order). Times are
this process's CPU time (`time.process_time`): other load on the machine moves them less.

    .venv/bin/python benchmarks/matching.py [--steps 50000] [--recovery 0.5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

# Run as a script (`make bench`): the repository root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.base import BookLevel, OrderBook, PairRules, Tick, Ticker
from models.enums import OrderSide, OrderType, StopTrigger, TimeInForce
from services.paper_trading.booking import TakerBooks
from services.paper_trading.liquidity import MONEY_CONTEXT, Venue
from services.paper_trading.matching import (
    Order,
    OrderIndex,
    Outcome,
    RestingFill,
    execute,
    trigger_stop,
)

FEE_BPS = Decimal("10")
GOAL_EVENTS_PER_SECOND = 500_000
STEP = Decimal("0.001")  # every symbol's quantity step
LEVELS = 10
T0 = datetime(2025, 1, 1, tzinfo=UTC)

Action = Order | str | datetime  # an order to take, an order id to cancel, a time to expire
Event = tuple[str, str, Decimal, Decimal]  # kind, order id, price, quantity


@dataclass(frozen=True, slots=True)
class Step:
    book: OrderBook
    last: Decimal
    bid: Decimal
    ask: Decimal
    actions: tuple[Action, ...]


@dataclass(slots=True)
class Flow:
    first_books: list[OrderBook]
    orders: list[Order]
    steps: list[Step] = field(default_factory=list)


class _Cache:
    """Decimals and book levels made once per distinct value, as a feed would."""

    def __init__(self) -> None:
        self.prices: dict[int, Decimal] = {}
        self.levels: dict[tuple[int, int], BookLevel] = {}

    def price(self, cents: int) -> Decimal:
        value = self.prices.get(cents)
        if value is None:
            value = self.prices[cents] = Decimal(cents).scaleb(-2)
        return value

    def level(self, cents: int, units: int) -> BookLevel:
        value = self.levels.get((cents, units))
        if value is None:
            value = self.levels[cents, units] = BookLevel(self.price(cents), units * STEP)
        return value


def _order(
    order_id: str, symbol: str, buy: bool, kind: OrderType, units: int, **extra: Any
) -> Order:
    quantity = units * STEP
    side = OrderSide.BUY if buy else OrderSide.SELL
    tif = extra.pop("tif", TimeInForce.GTC)
    return Order(order_id, "acct", symbol, side, kind, tif, quantity, quantity, **extra)


def build_flow(*, orders: int, symbols: int, steps: int, seed: int) -> Flow:
    """The seeded flow above; prices in cents, quantities in steps of 0.001."""
    rng, cache = random.Random(seed), _Cache()
    names = [f"SYM{i:02d}-USD" for i in range(symbols)]
    mids = {name: rng.randint(1_000, 5_000_000) for name in names}
    touch = {name: rng.randint(50, 400) for name in names}  # units at the touch

    def book(name: str) -> tuple[OrderBook, int, int]:
        mid = mids[name]
        spread = max(2, mid // 10_000)
        spacing = max(1, mid // 20_000)
        bid, ask, base = mid - spread // 2, mid - spread // 2 + spread, touch[name]
        factor = rng.choice((3, 4, 5))
        bids = tuple(
            cache.level(bid - i * spacing, base * (i + 1) * factor // 4) for i in range(LEVELS)
        )
        asks = tuple(
            cache.level(ask + i * spacing, base * (i + 1) * factor // 4) for i in range(LEVELS)
        )
        return OrderBook(name, bids, asks, T0), bid, ask

    first = [book(name)[0] for name in names]
    resting: list[Order] = []
    for i in range(orders):
        name, buy = names[i % symbols], rng.random() < 0.5
        mid = mids[name]
        offset = round(mid * rng.uniform(0.0, 0.02))
        units, kind = rng.randint(1, 2 * touch[name]), rng.random()
        extra: dict[str, Any] = {}
        if rng.random() < 0.2:
            extra = {
                "tif": TimeInForce.GTD,
                "expires_at": T0 + timedelta(seconds=rng.randint(1, steps)),
            }
        if kind < 0.6:  # a limit on its own side of the mid
            order_type = OrderType.LIMIT
            extra["limit_price"] = cache.price(mid - offset - 1 if buy else mid + offset + 1)
        else:  # a stop on the far side: above for a buy, below for a sell
            stop = mid + offset + 1 if buy else mid - offset - 1
            order_type = OrderType.STOP if kind < 0.85 else OrderType.STOP_LIMIT
            extra["stop_price"] = cache.price(stop)
            extra["stop_trigger"] = rng.choice(
                (StopTrigger.LAST, StopTrigger.LAST, StopTrigger.BID, StopTrigger.ASK)
            )
            if order_type is OrderType.STOP_LIMIT:
                extra["limit_price"] = cache.price(stop + max(1, stop // 200) * (1 if buy else -1))
        resting.append(_order(f"o{i}", name, buy, order_type, units, **extra))
    flow = Flow(first, resting)
    for n in range(steps):
        name = names[rng.randrange(symbols)]
        mids[name] = max(1_000, mids[name] + round(rng.gauss(0, mids[name] * 0.0003)))
        fresh, bid, ask = book(name)
        spacing = max(1, mids[name] // 20_000)
        actions: list[Action] = []
        for k in range(rng.choice((0, 1, 1, 2))):  # market orders, now and then a sweep
            units = max(1, round(touch[name] * rng.lognormvariate(0.0, 0.9)))
            market = _order(
                f"m{n}-{k}", name, rng.random() < 0.5, OrderType.MARKET, units, tif=TimeInForce.IOC
            )
            actions.append(market)
        for k in range(rng.choice((0, 1, 2))):  # limits joining a queue at or near the touch
            buy, depth = rng.random() < 0.5, rng.randint(-1, 4)
            price = cache.price(bid - depth * spacing if buy else ask + depth * spacing)
            units = rng.randint(1, 2 * touch[name])
            actions.append(
                _order(f"l{n}-{k}", name, buy, OrderType.LIMIT, units, limit_price=price)
            )
        if rng.random() < 0.05:
            actions.append(f"o{rng.randrange(orders)}")
        if n % 100 == 99:
            actions.append(T0 + timedelta(seconds=n))
        last = fresh.asks[0].price if rng.random() < 0.5 else fresh.bids[0].price
        flow.steps.append(Step(fresh, last, cache.price(bid), cache.price(ask), tuple(actions)))
    return flow


class _Market:
    """What TakerBooks asks of the market data service: the pair's quantity step."""

    def resolve_symbol(self, raw: str) -> str:
        return raw

    def pair_rules(self, symbol: str) -> PairRules:
        return PairRules(
            symbol, "X", "USD", Decimal("0.01"), STEP, STEP, Decimal(10**9), Decimal(0)
        )

    # The rest of MarketView: TakerBooks never asks for them here, since every book
    # is handed to it by `set_book`; reaching one would be a bug in the benchmark.
    def ticker(self, symbol: str) -> Ticker:
        raise AssertionError(f"the benchmark feeds books; TakerBooks asked for a {symbol} ticker")

    def order_book(self, symbol: str, depth: int = 20) -> OrderBook:
        raise AssertionError(f"the benchmark feeds books; asked for {depth} levels of {symbol}")

    def add_tick_listener(
        self, listener: Callable[[Mapping[str, Tick]], Awaitable[None]]
    ) -> Callable[[], None]:
        raise AssertionError(f"the benchmark steps the books itself, not {listener!r}")


class Indexed:
    """The real path: TakerBooks and OrderIndex on one Venue."""

    def __init__(self, flow: Flow, recovery: Decimal) -> None:
        self.venue = Venue(recovery=recovery)
        self.books = TakerBooks(_Market(), venue=self.venue)
        self.index = OrderIndex(self.venue)
        for first in flow.first_books:
            self.books.set_book(first.symbol, first)
        self.index.reload(flow.orders)

    def step(self, step: Step, out: list[Event] | None) -> int:
        symbol = step.book.symbol
        self.books.set_book(symbol, step.book)
        events = self.index.on_market(
            symbol, last=step.last, bid=step.bid, ask=step.ask, maker_fee_bps=FEE_BPS
        )
        count = len(events)
        for event in events:
            if isinstance(event, RestingFill):
                if out is not None:
                    out.append(("maker", event.order.id, event.fill.price, event.fill.quantity))
            else:
                if out is not None:
                    out.append(("stop", event.order.id, event.stop_price, event.order.remaining))
                count += self.take(event.order, out)
        for action in step.actions:
            if isinstance(action, Order):
                count += self.take(action, out)
            elif isinstance(action, str):
                self.index.cancel(action)
            else:
                expired = self.index.expire(action)
                count += len(expired)
                if out is not None:
                    out.extend(("expired", o.id, o.remaining, o.quantity) for o in expired)
        return count

    def take(self, order: Order, out: list[Event] | None) -> int:
        execution = self.books.take(order, FEE_BPS)
        if out is not None:
            out.extend(("taker", order.id, f.price, f.quantity) for f in execution.fills)
        if execution.outcome is Outcome.RESTING:
            self.index.add(execution.order)
        return len(execution.fills)


class _Resting:
    __slots__ = ("ahead", "order", "remaining", "sequence")

    def __init__(self, order: Order, sequence: int, ahead: Decimal) -> None:
        self.order, self.sequence, self.ahead = order, sequence, ahead
        self.remaining = order.remaining


class Naive:
    """The reference: every step scans every resting order; each order carries its own
    queue ahead (a trade at its price lowers it, and may take it below zero: nothing is
    ahead then); books are recomputed from the external book and the consumed depth."""

    def __init__(self, flow: Flow, recovery: Decimal) -> None:
        self.keep = 1 - recovery
        self.external: dict[str, OrderBook] = {}
        # (symbol, side 0 bid / 1 ask, price) -> (amount, the symbol's step it last changed)
        self.consumed: dict[tuple[str, int, Decimal], tuple[Decimal, int]] = {}
        self.steps: dict[str, int] = {}
        self.resting: dict[str, _Resting] = {}
        self.groups: dict[tuple[str, int, Decimal | None], list[_Resting]] = {}
        self.sequence = 0
        for first in flow.first_books:
            self.external[first.symbol] = first
            self.steps[first.symbol] = 1
        for order in flow.orders:
            self.add(order)

    def held(self, symbol: str, side: int, price: Decimal) -> Decimal:
        """floor(amount * (1 - recovery) ** age) to the step, the power multiplied out."""
        amount, since = self.consumed.get((symbol, side, price), (Decimal(0), 0))
        factor = Decimal(1)
        for _ in range(self.steps[symbol] - since):
            factor *= self.keep
        left = amount * factor
        return left - left % STEP

    def shown(self, symbol: str, side: int) -> list[BookLevel]:
        book = self.external[symbol]
        out = []
        for level in book.bids if side == 0 else book.asks:
            left = level.quantity - self.held(symbol, side, level.price)
            if left > 0:
                out.append(BookLevel(level.price, left))
        return out

    def available(self, symbol: str, side: int, price: Decimal) -> Decimal:
        return next(
            (lv.quantity for lv in self.shown(symbol, side) if lv.price == price), Decimal(0)
        )

    def regroup(self, symbol: str) -> None:
        """The symbol's limits by side and price, from a scan of every resting order."""
        self.groups = {}
        for r in self.resting.values():
            order = r.order
            if order.symbol == symbol and order.order_type is OrderType.LIMIT:
                key = (symbol, 0 if order.side is OrderSide.BUY else 1, order.limit_price)
                self.groups.setdefault(key, []).append(r)

    def queued(self, symbol: str, side: int, price: Decimal) -> list[_Resting]:
        # Orders gone since the scan may be in the list: their queue no longer matters.
        return self.groups.get((symbol, side, price), [])

    def consume(self, symbol: str, side: int, price: Decimal, quantity: Decimal) -> None:
        key = (symbol, side, price)
        self.consumed[key] = (self.held(symbol, side, price) + quantity, self.steps[symbol])
        for r in self.queued(symbol, side, price):
            r.ahead -= quantity

    def add(self, order: Order) -> None:
        ahead = Decimal(0)
        if order.order_type is OrderType.LIMIT and order.limit_price is not None:
            side = 0 if order.side is OrderSide.BUY else 1
            ahead = self.available(order.symbol, side, order.limit_price)
            for r in self.queued(order.symbol, side, order.limit_price):
                r.ahead = min(r.ahead, ahead)
        resting = self.resting[order.id] = _Resting(order, self.sequence, ahead)
        self.sequence += 1
        if order.order_type is OrderType.LIMIT:
            key = (order.symbol, 0 if order.side is OrderSide.BUY else 1, order.limit_price)
            self.groups.setdefault(key, []).append(resting)

    def advance(self, book: OrderBook) -> None:
        symbol, old = book.symbol, self.external[book.symbol]
        shown = [{lv.price: lv.quantity for lv in self.shown(symbol, side)} for side in (0, 1)]
        deepest = [
            old.bids[-1].price if old.bids else None,
            old.asks[-1].price if old.asks else None,
        ]
        for r in self.resting.values():  # cap at what the old book showed
            order, price = r.order, r.order.limit_price
            if order.symbol != symbol or order.order_type is not OrderType.LIMIT or price is None:
                continue
            side = 0 if order.side is OrderSide.BUY else 1
            last = deepest[side]
            if last is not None and not (price < last if side == 0 else price > last):
                r.ahead = min(r.ahead, shown[side].get(price, Decimal(0)))
        self.steps[symbol] += 1
        self.external[symbol] = book

    def makers(self, symbol: str, buy: bool, touch: Decimal, out: list[Event]) -> None:
        side = 0 if buy else 1
        crossed = sorted(
            (
                r
                for r in self.resting.values()
                if r.order.symbol == symbol
                and r.order.order_type is OrderType.LIMIT
                and (r.order.side is OrderSide.BUY) == buy
                and r.order.limit_price is not None
                and (r.order.limit_price >= touch if buy else r.order.limit_price <= touch)
            ),
            key=lambda r: (-r.order.limit_price if buy else r.order.limit_price, r.sequence),  # type: ignore[operator]
        )
        levels = [[lv.price, lv.quantity] for lv in self.shown(symbol, 1 - side)]
        taken: dict[Decimal, Decimal] = {}

        def draw(limit: Decimal, wanted: Decimal) -> Decimal:
            got = Decimal(0)
            for level in levels:
                if got >= wanted or (level[0] > limit if buy else level[0] < limit):
                    break
                part = min(wanted - got, level[1])
                level[1] -= part
                got += part
                if part:
                    taken[level[0]] = taken.get(level[0], Decimal(0)) + part
            return got

        for r in crossed:
            price = r.order.limit_price or Decimal(0)
            if r.ahead > 0:
                ahead = r.ahead
                reached = draw(price, ahead)
                for other in self.queued(symbol, side, price):
                    other.ahead -= reached
                if reached < ahead:
                    break
            quantity = draw(price, r.remaining)
            if not quantity:
                break
            r.remaining -= quantity
            out.append(("maker", r.order.id, price, quantity))
            if r.remaining:
                break
            del self.resting[r.order.id]
        for price, quantity in taken.items():
            self.consume(symbol, 1 - side, price, quantity)

    def stops(self, step: Step) -> list[Order]:
        symbol, fired = step.book.symbol, []
        for r in self.resting.values():
            order = r.order
            if order.symbol != symbol or order.stop_price is None:
                continue
            trigger = order.stop_trigger
            price = (
                step.last
                if trigger == StopTrigger.LAST
                else step.bid
                if trigger == StopTrigger.BID
                else step.ask
            )
            buy = order.side is OrderSide.BUY
            if price >= order.stop_price if buy else price <= order.stop_price:
                fired.append(
                    (
                        0 if buy else 1,
                        order.stop_price if buy else -order.stop_price,
                        r.sequence,
                        order,
                    )
                )
        fired.sort(key=lambda f: f[:3])
        for *_, order in fired:
            del self.resting[order.id]
        return [order for *_, order in fired]

    def step(self, step: Step, out: list[Event]) -> int:
        symbol, start = step.book.symbol, len(out)
        with localcontext(MONEY_CONTEXT):
            self.regroup(symbol)
            self.advance(step.book)
            self.makers(symbol, True, step.ask, out)
            self.makers(symbol, False, step.bid, out)
            for order in self.stops(step):
                out.append(("stop", order.id, order.stop_price or Decimal(0), order.remaining))
                self.take(trigger_stop(order), out)
            for action in step.actions:
                if isinstance(action, Order):
                    self.take(action, out)
                elif isinstance(action, str):
                    self.resting.pop(action, None)
                else:
                    due = sorted(
                        (r.order.expires_at, r.sequence, r)
                        for r in self.resting.values()
                        if r.order.expires_at is not None and r.order.expires_at <= action
                    )
                    for *_, r in due:
                        del self.resting[r.order.id]
                        out.append(("expired", r.order.id, r.remaining, r.order.quantity))
        return len(out) - start

    def take(self, order: Order, out: list[Event]) -> None:
        side = 1 if order.side is OrderSide.BUY else 0  # the side it takes from
        book = OrderBook(
            order.symbol, tuple(self.shown(order.symbol, 0)), tuple(self.shown(order.symbol, 1)), T0
        )
        execution = execute(order, book, taker_fee_bps=FEE_BPS)
        for fill in execution.fills:
            self.consume(order.symbol, side, fill.price, fill.quantity)
            out.append(("taker", order.id, fill.price, fill.quantity))
        if execution.outcome is Outcome.RESTING:
            self.add(execution.order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--check-steps", type=int, default=150)
    parser.add_argument("--recovery", type=Decimal, default=Decimal("0.5"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="profile the indexed run")
    args = parser.parse_args()

    started = time.process_time()
    flow = build_flow(orders=args.orders, symbols=args.symbols, steps=args.steps, seed=args.seed)
    print(
        f"{len(flow.orders):,} resting orders over {args.symbols} symbols, {len(flow.steps):,} "
        f"market steps, recovery {args.recovery} (seed {args.seed}; built in "
        f"{time.process_time() - started:.1f} s)"
    )

    started = time.process_time()
    indexed = Indexed(flow, args.recovery)
    print(f"index load: {time.process_time() - started:.3f} s")
    step = indexed.step
    started = time.process_time()
    events = sum(step(s, None) for s in flow.steps)
    seconds = time.process_time() - started
    rate = events / seconds
    print(
        f"indexed: {rate:>12,.0f} book events/s  ({events:,} events in {len(flow.steps):,} "
        f"steps, {seconds:.2f} s; {len(flow.steps) / seconds:,.0f} steps/s; "
        f"{len(indexed.index):,} still resting)"
    )

    checked = flow.steps[: args.check_steps]
    mine: list[Event] = []
    fresh = Indexed(flow, args.recovery)
    for s in checked:
        fresh.step(s, mine)
    naive = Naive(flow, args.recovery)
    theirs: list[Event] = []
    started = time.process_time()
    for s in checked:
        naive.step(s, theirs)
    naive_seconds = time.process_time() - started
    naive_rate = len(theirs) / naive_seconds if theirs else 0.0
    print(
        f"naive:   {naive_rate:>12,.0f} book events/s  ({len(theirs):,} events in {len(checked):,} "
        f"steps, {naive_seconds:.2f} s; {len(checked) / naive_seconds:,.1f} steps/s)"
    )
    same = mine == theirs
    first_difference = next(
        (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
        min(len(mine), len(theirs)),
    )
    status = "identical" if same else f"DIFFERENT from event {first_difference}"
    print(f"check vs naive on {len(checked):,} steps: {len(mine):,} events, {status}")
    if naive_rate:
        print(f"speed-up: {rate / naive_rate:,.0f}x in book events/s")
    verdict = "met" if rate >= GOAL_EVENTS_PER_SECOND else "NOT met"
    print(f"goal >= {GOAL_EVENTS_PER_SECOND:,} book events/s: {verdict}")
    if not same:
        print("mine:  ", mine[first_difference : first_difference + 3])
        print("theirs:", theirs[first_difference : first_difference + 3])
        raise SystemExit(1)

    if args.profile:
        profiled = Indexed(flow, args.recovery)
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [profiled.step(s, None) for s in flow.steps])
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        print(text.getvalue())


if __name__ == "__main__":
    main()
