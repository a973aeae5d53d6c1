"""Resting-order index throughput: market updates per second, indexed vs scanning.

100,000 resting orders over 50 symbols (buy and sell limits, stops and stop-limits at
seeded random prices within 5% of each symbol's mid), then a seeded random walk of
market updates, one symbol per tick. The same run measures `OrderIndex.on_market`
and two scans (every order per tick, and every order of the tick's symbol), and checks
that the scans and the index release the same orders in the same order.

    .venv/bin/python benchmarks/matching.py [--ticks 500000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

# Run as a script (`make bench`): the repository root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.enums import OrderSide, OrderType, TimeInForce
from services.paper_trading.matching import MarketEvent, Order, OrderIndex, RestingFill

FEE_BPS = Decimal("10")
TARGET_TICKS_PER_SECOND = 100_000

Tick = tuple[str, Decimal, Decimal, Decimal]  # symbol, last, bid, ask
Released = list[tuple[str, str]]  # (order id, "fill" | "stop") in event order


@dataclass(frozen=True, slots=True)
class Market:
    orders: list[Order]
    ticks: list[Tick]


def build_market(*, orders: int, symbols: int, ticks: int, seed: int) -> Market:
    """Seeded orders around each symbol's mid and a random walk of its last price, in
    cents; Decimals are made once per distinct price, as a feed would hand them over."""
    rng = random.Random(seed)
    prices: dict[int, Decimal] = {}

    def price(cents: int) -> Decimal:
        value = prices.get(cents)
        if value is None:
            value = prices[cents] = Decimal(cents).scaleb(-2)
        return value

    names = [f"SYM{i:02d}-USD" for i in range(symbols)]
    mids = {name: rng.randint(1_000, 5_000_000) for name in names}  # 10.00 to 50,000.00
    book: list[Order] = []
    for i in range(orders):
        name = names[i % symbols]
        mid = mids[name]
        offset = max(2, round(mid * rng.uniform(0.0005, 0.05)))
        buy = rng.random() < 0.5
        kind = rng.random()
        quantity = price(rng.randint(1, 10_000))
        if kind < 0.6:  # a limit rests on its own side of the mid
            order_type, limit, stop = OrderType.LIMIT, mid - offset if buy else mid + offset, None
        else:  # a stop waits on the far side: above for a buy, below for a sell
            stop = mid + offset if buy else mid - offset
            limit = None
            order_type = OrderType.STOP
            if kind >= 0.8:
                order_type = OrderType.STOP_LIMIT
                limit = stop + max(1, stop // 200) if buy else stop - max(1, stop // 200)
        book.append(
            Order(
                id=f"o{i}",
                account_id=f"acct-{i % 97}",
                symbol=name,
                side=OrderSide.BUY if buy else OrderSide.SELL,
                order_type=order_type,
                time_in_force=TimeInForce.GTC,
                quantity=quantity,
                remaining=quantity,
                limit_price=price(limit) if limit is not None else None,
                stop_price=price(stop) if stop is not None else None,
            )
        )
    last = dict(mids)
    walk: list[Tick] = []
    for _ in range(ticks):
        name = names[rng.randrange(symbols)]
        cents = max(3, last[name] + round(rng.gauss(0, last[name] * 0.0002)))
        last[name] = cents
        walk.append((name, price(cents), price(cents - 1), price(cents + 1)))
    return Market(book, walk)


class Scan:
    """The baseline: every tick looks at every resting order, or, `per_symbol`, at
    every resting order of the tick's symbol (the fairer baseline)."""

    def __init__(self, orders: Sequence[Order], *, per_symbol: bool) -> None:
        self.per_symbol = per_symbol
        self.groups: dict[str, list[tuple[int, Order]]] = {}
        for sequence, order in enumerate(orders):
            key = order.symbol if per_symbol else "*"
            self.groups.setdefault(key, []).append((sequence, order))

    def on_market(self, symbol: str, last: Decimal, bid: Decimal, ask: Decimal) -> Released:
        key = symbol if self.per_symbol else "*"
        entries = self.groups.get(key, [])
        groups: tuple[list[tuple[Decimal, int, str]], ...] = ([], [], [], [])
        for sequence, order in entries:
            if order.symbol != symbol:
                continue
            buy = order.side is OrderSide.BUY
            if order.order_type is OrderType.LIMIT:
                limit = order.limit_price
                if limit is None:
                    continue
                if buy and limit >= ask:
                    groups[0].append((-limit, sequence, order.id))
                elif not buy and limit <= bid:
                    groups[1].append((limit, sequence, order.id))
            else:
                stop = order.stop_price
                if stop is None:
                    continue
                if buy and stop <= last:
                    groups[2].append((stop, sequence, order.id))
                elif not buy and stop >= last:
                    groups[3].append((-stop, sequence, order.id))
        released: Released = []
        for kind, group in zip(("fill", "fill", "stop", "stop"), groups, strict=True):
            released.extend((order_id, kind) for _, _, order_id in sorted(group))
        if released:
            gone = {order_id for order_id, _ in released}
            self.groups[key] = [entry for entry in entries if entry[1].id not in gone]
        return released


def released(events: Sequence[MarketEvent]) -> Released:
    return [
        (event.order.id, "fill" if isinstance(event, RestingFill) else "stop") for event in events
    ]


def run_index(index: OrderIndex, ticks: Sequence[Tick]) -> tuple[float, int, int]:
    """Seconds, events, ticks that released anything."""
    on_market = index.on_market
    events = busy = 0
    start = time.perf_counter()
    for symbol, last, bid, ask in ticks:
        out = on_market(symbol, last=last, bid=bid, ask=ask, maker_fee_bps=FEE_BPS)
        if out:
            events += len(out)
            busy += 1
    return time.perf_counter() - start, events, busy


def run_scan(scan: Scan, ticks: Sequence[Tick]) -> tuple[float, list[Released]]:
    out: list[Released] = []
    start = time.perf_counter()
    for symbol, last, bid, ask in ticks:
        out.append(scan.on_market(symbol, last, bid, ask))
    return time.perf_counter() - start, out


def loaded_index(orders: Sequence[Order]) -> tuple[OrderIndex, float]:
    index = OrderIndex()
    start = time.perf_counter()
    index.reload(orders)
    return index, time.perf_counter() - start


def check_same(
    name: str, orders: Sequence[Order], ticks: Sequence[Tick], expected: list[Released]
) -> None:
    index, _ = loaded_index(orders)
    got = [
        released(index.on_market(s, last=la, bid=b, ask=a, maker_fee_bps=FEE_BPS))
        for s, la, b, a in ticks
    ]
    mismatches = sum(1 for mine, theirs in zip(got, expected, strict=True) if mine != theirs)
    count = sum(len(r) for r in expected)
    status = "OK" if not mismatches else f"MISMATCH on {mismatches} ticks"
    print(f"  check vs {name}: {len(ticks):,} ticks, {count:,} orders released, {status}")
    if mismatches:
        raise SystemExit(1)


def profile(call: Callable[[], object]) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(call)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(8)
    print(text.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=500_000)
    parser.add_argument("--full-scan-ticks", type=int, default=200)
    parser.add_argument("--symbol-scan-ticks", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="profile the indexed run")
    args = parser.parse_args()

    market = build_market(
        orders=args.orders, symbols=args.symbols, ticks=args.ticks, seed=args.seed
    )
    print(
        f"{len(market.orders):,} resting orders over {args.symbols} symbols, "
        f"{len(market.ticks):,} market updates (seed {args.seed})"
    )

    index, load_seconds = loaded_index(market.orders)
    print(f"index load: {load_seconds:.3f} s ({len(market.orders) / load_seconds:,.0f} adds/s)")
    seconds, events, busy = run_index(index, market.ticks)
    indexed_rate = len(market.ticks) / seconds
    print(
        f"indexed:     {indexed_rate:>12,.0f} ticks/s  ({len(market.ticks):,} ticks in "
        f"{seconds:.3f} s; {busy:,} ticks released {events:,} orders, "
        f"{len(index):,} still resting)"
    )

    full_ticks = market.ticks[: args.full_scan_ticks]
    full_seconds, full_released = run_scan(Scan(market.orders, per_symbol=False), full_ticks)
    full_rate = len(full_ticks) / full_seconds
    print(f"full scan:   {full_rate:>12,.0f} ticks/s  ({len(full_ticks):,} ticks)")

    symbol_ticks = market.ticks[: args.symbol_scan_ticks]
    symbol_seconds, symbol_released = run_scan(Scan(market.orders, per_symbol=True), symbol_ticks)
    symbol_rate = len(symbol_ticks) / symbol_seconds
    print(f"symbol scan: {symbol_rate:>12,.0f} ticks/s  ({len(symbol_ticks):,} ticks)")

    print(f"speed-up: {indexed_rate / full_rate:,.0f}x over the full scan, ", end="")
    print(f"{indexed_rate / symbol_rate:,.1f}x over the per-symbol scan")
    check_same("full scan", market.orders, full_ticks, full_released)
    check_same("symbol scan", market.orders, symbol_ticks, symbol_released)
    verdict = "met" if indexed_rate >= TARGET_TICKS_PER_SECOND else "NOT met"
    print(f"goal >= {TARGET_TICKS_PER_SECOND:,} ticks/s: {verdict}")

    if args.profile:
        fresh, _ = loaded_index(market.orders)
        profile(lambda: run_index(fresh, market.ticks))


if __name__ == "__main__":
    main()
