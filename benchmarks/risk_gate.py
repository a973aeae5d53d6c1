"""What the pre-trade check adds to an order, on SQLite and on PostgreSQL (goal: < 1 ms p99).

Run: .venv/bin/python benchmarks/risk_gate.py [--orders 300] [--rounds 5] [--warmup 60]
         [--backend both|sqlite|postgres] [--monitor] [--part-runs 300] [--seed 42]
Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) unless `--backend sqlite`;
the script creates its database `cival_bench_<pid>` and drops it at the end. About
forty seconds per database with the defaults. Exits 1 when the goal is not met on
either database (and on any order that does not end as expected).

The real services, as `create_app(settings)` builds and starts them (the registry's
lifespan: migrations, the risk service installing its gate on the paper exchange), on a
fresh SQLite file and on a fresh PostgreSQL database in turn; Redis off, WARNING logs,
the agents' scheduler off and the simulated market stepped by hand
(`market_data.advance`, untimed, before every four orders), so nothing but the measured
order runs on the event loop. The risk monitor is off by default: it is not on the
order's path, and its after-fill work (re-evaluating limits, storing the full metrics
set) would land on whichever order happens to be in flight; `--monitor` turns it on to
show that cost.

Three configurations, each on an account of its own (three agents' paper accounts of the
solo user, 1,000,000 USD each, 0.05 BTC bought first, so sells have something to sell):
- a. the gate removed (`paper_trading.pre_trade = None`): the floor;
- b. the gate installed, no limit holding on the account (the kill switches and the
  limits are read, nothing is evaluated);
- c. the gate with one limit of every type on the account (daily_loss, max_drawdown,
  position_size, gross_exposure, leverage, max_open_orders, order_notional), none
  breached, so each order reads every measure (equity and exposures from the positions
  and the open buys, the open orders, the day's start and the peak, the last two kept
  in memory after the first read) and evaluates all seven.
The gate in b and c is the service's own `RiskGate` behind a thin wrapper that times
`prepare` (awaited under the account's lock) and the returned check's `check`
(`time.perf_counter`, monotonic); the wrapper's own cost (two timer reads and one small
object per call) is counted in b and c, so it can only overstate the gate.

Orders, through the service call (`paper_trading.place_order`, timed alone; the request
models are built before the timer starts): 0.001 BTC, cycling market buy, limit buy at
80% of the bid, market sell, limit sell at 125% of the ask; the limits rest, and the
oldest are cancelled (untimed) before each cycle of four, down to six, so no account
holds more than eight open orders. A warm-up block per configuration (not counted),
then `--rounds` rounds of `--orders` orders per configuration, the configurations'
order rotated each round, so drift and the other work on the machine hit all three
alike. Each market order must fill and each limit order rest, or the script fails.

Printed per database: p50, p90, p99 wall time per order and the median CPU time of this
process per order (aiosqlite's worker thread included; PostgreSQL's server is not);
the added p50 and p99 of b and c over a, with a 90% bootstrap interval (2,000
resamples of each configuration's orders; it ignores drift between rounds, which the
per-round lines show); the gate alone (prepare + check) per order, p50/p90/p99, and
split; the SQL statements per order kind (one extra cycle counted with an engine event
listener, after the timed rounds; with `--monitor` they include what the monitor ran
meanwhile); prepare's steps timed apart, `--part-runs` times each in a read transaction
on account c (the kill switch read, the limits read, the account's measures and each of
their reads, the evaluation), next to a `SELECT 1` in the same session, the floor of
one statement; and, last, the seven limits as the risk monitor measures them at the end
(none may be breached). The verdict is on c's added p99.

The wall times are shared with whatever else the machine runs (2 cores here): read
them with the per-round lines and the bootstrap intervals; the CPU medians move much
less under load and are the steadier measure of what the gate costs this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

# Run as a script: the repository root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_lifespan import LifespanManager

from core.config import load_settings
from database.repositories import accounts as account_repo
from database.repositories import risk as risk_repo
from main_consolidated import create_app
from models.agents import AgentCreate
from models.enums import OrderSide, OrderStatus
from models.risk import LimitCreate, LimitType
from models.trading import OrderCreate
from services.container import Services
from services.paper_trading import ledger
from services.paper_trading.placing import Placement, PreparedCheck, PreTradeCheck
from services.risk.gate import rule_of
from services.risk.limits import breaches, evaluate
from services.risk.state import OrderIntent

GOAL_MS = 1.0
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYMBOL = "BTC/USD"
QUANTITY = Decimal("0.001")
HOLDING = Decimal("0.05")
CASH = Decimal(1_000_000)
KEEP_OPEN = 6
BOOTSTRAP = 2_000
KINDS = ("market buy", "limit buy", "market sell", "limit sell")
# One of every type, far from breached (equity ~1,000,000 USD, positions ~0.05 BTC).
LIMITS: dict[LimitType, Decimal] = {
    LimitType.DAILY_LOSS: Decimal(100_000),
    LimitType.MAX_DRAWDOWN: Decimal("0.5"),
    LimitType.POSITION_SIZE: Decimal(500_000),
    LimitType.GROSS_EXPOSURE: Decimal(900_000),
    LimitType.LEVERAGE: Decimal(5),
    LimitType.MAX_OPEN_ORDERS: Decimal(100),
    LimitType.ORDER_NOTIONAL: Decimal(100_000),
}


# -- the gate, timed ----------------------------------------------------------------------


@dataclass(slots=True)
class GateTime:
    """One order's time in the gate, in seconds (check None: prepare found no limits)."""

    prepare: float = 0.0
    check: float | None = None


class TimedCheck:
    def __init__(self, inner: PreparedCheck, into: GateTime) -> None:
        self._inner = inner
        self._into = into

    def check(self, *, symbol: str, side: OrderSide, notional: Decimal, rests: bool) -> None:
        started = time.perf_counter()
        try:
            self._inner.check(symbol=symbol, side=side, notional=notional, rests=rests)
        finally:
            self._into.check = time.perf_counter() - started


class TimedGate:
    """The service's RiskGate behind monotonic timers; `current` receives the next
    order's times (set by the caller before each order)."""

    def __init__(self, inner: PreTradeCheck) -> None:
        self._inner = inner
        self.current = GateTime()

    async def prepare(
        self, session: AsyncSession, book: ledger.Book, new: Placement
    ) -> PreparedCheck | None:
        into = self.current
        started = time.perf_counter()
        try:
            prepared = await self._inner.prepare(session, book, new)
        finally:
            into.prepare = time.perf_counter() - started
        return None if prepared is None else TimedCheck(prepared, into)

    async def halted(self, session: AsyncSession, book: ledger.Book) -> bool:
        return await self._inner.halted(session, book)


# -- the runs -----------------------------------------------------------------------------


@dataclass
class Config:
    key: str
    label: str
    account_id: uuid.UUID
    pre_trade: TimedGate | None
    open_orders: list[uuid.UUID] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)  # ms per order, measured rounds
    cpu: list[float] = field(default_factory=list)
    gate: list[GateTime] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)  # wall ms, per round
    limited: int = 0  # orders whose prepare returned limits to check
    statements: dict[str, int] = field(default_factory=dict)  # per order kind


def requests(services: Services, account_id: uuid.UUID) -> list[OrderCreate]:
    """One cycle of the four kinds, priced from the market as it is now."""
    rules = services.market_data.pair_rules(SYMBOL)
    ticker = services.market_data.ticker(SYMBOL)
    tick = rules.tick_size
    low = (ticker.bid * Decimal("0.8") / tick).to_integral_value(ROUND_FLOOR) * tick
    high = (ticker.ask * Decimal("1.25") / tick).to_integral_value(ROUND_CEILING) * tick
    base: dict[str, Any] = {"symbol": SYMBOL, "quantity": QUANTITY, "account_id": account_id}
    bodies: list[dict[str, Any]] = [
        {"side": "buy"},
        {"side": "buy", "order_type": "limit", "price": low},
        {"side": "sell"},
        {"side": "sell", "order_type": "limit", "price": high},
    ]
    return [OrderCreate.model_validate(base | body) for body in bodies]


async def trim(services: Services, user: uuid.UUID, config: Config) -> None:
    """Cancel the oldest resting orders beyond KEEP_OPEN (untimed)."""
    while len(config.open_orders) > KEEP_OPEN:
        await services.paper_trading.cancel_order(user, config.open_orders.pop(0))


async def block(
    services: Services, config: Config, orders: int, *, record: bool, round_of: list[float]
) -> None:
    """`orders` orders on the config's account with its gate (or none)."""
    user = services.users.solo_user_id
    services.paper_trading.pre_trade = config.pre_trade
    cycle: list[OrderCreate] = []
    for i in range(orders):
        if i % len(KINDS) == 0:
            await services.market_data.advance(1)
            await trim(services, user, config)
            cycle = requests(services, config.account_id)
        request = cycle[i % len(KINDS)]
        times = GateTime()
        if config.pre_trade is not None:
            config.pre_trade.current = times
        cpu = time.process_time()
        started = time.perf_counter()
        read = await services.paper_trading.place_order(user, request)
        wall = (time.perf_counter() - started) * 1000
        cpu = (time.process_time() - cpu) * 1000
        resting = request.order_type.value == "limit"
        expected = OrderStatus.PENDING if resting else OrderStatus.FILLED
        if read.status is not expected:
            raise SystemExit(f"{config.label}: a {KINDS[i % 4]} was {read.status}, not {expected}")
        if resting:
            config.open_orders.append(read.id)
        if record:
            config.wall.append(wall)
            config.cpu.append(cpu)
            round_of.append(wall)
            if config.pre_trade is not None:
                config.gate.append(times)
                config.limited += times.check is not None


async def count_statements(services: Services, configs: Sequence[Config]) -> None:
    """One more cycle per configuration with every statement counted (not timed)."""
    engine = services.database.database.engine.sync_engine
    seen = [0]

    def on_statement(*_: object) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        user = services.users.solo_user_id
        for config in configs:
            services.paper_trading.pre_trade = config.pre_trade
            await services.market_data.advance(1)
            await trim(services, user, config)
            for kind, request in zip(KINDS, requests(services, config.account_id), strict=True):
                seen[0] = 0
                read = await services.paper_trading.place_order(user, request)
                config.statements[kind] = seen[0]
                if read.status is OrderStatus.PENDING:
                    config.open_orders.append(read.id)
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)


async def setup(services: Services) -> list[Config]:
    user = services.users.solo_user_id
    accounts = []
    for key in "abc":
        body = AgentCreate(name=f"gate bench {key}", symbols=[SYMBOL], paper_balance=CASH)
        accounts.append((await services.agents.create_agent(user, body)).account_id)
    timed = TimedGate(services.risk.gate)
    configs = [
        Config("a", "a. gate removed", accounts[0], None),
        Config("b", "b. gate, no limits", accounts[1], timed),
        Config("c", "c. gate, 7 limits", accounts[2], timed),
    ]
    await services.market_data.advance(1)
    for config in configs:
        holding = OrderCreate.model_validate(
            {"symbol": SYMBOL, "side": "buy", "quantity": HOLDING, "account_id": config.account_id}
        )
        await services.paper_trading.place_order(user, holding)
    for limit_type, value in LIMITS.items():
        await services.risk.create_limit(
            user, LimitCreate(limit_type=limit_type, limit_value=value, account_id=accounts[2])
        )
    return configs


async def measure(services: Services, args: argparse.Namespace) -> list[Config]:
    configs = await setup(services)
    for config in configs:
        await block(services, config, args.warmup, record=False, round_of=[])
    for r in range(args.rounds):
        for config in configs[r % 3 :] + configs[: r % 3]:
            config.rounds.append([])
            await block(services, config, args.orders, record=True, round_of=config.rounds[-1])
    await count_statements(services, configs)
    services.paper_trading.pre_trade = services.risk.gate
    return configs


async def limits_at_end(services: Services, account_id: uuid.UUID) -> list[str]:
    """The seven limits as the monitor measures them now; fails on any breach."""
    evaluation = await services.risk.monitor.evaluate_account(
        services.users.solo_user_id, account_id
    )
    lines = []
    for reading in evaluation.readings:
        if reading.breached:
            raise SystemExit(f"limit breached, the run is void: {reading.reason}")
        lines.append(f"    {reading.rule.limit_type.value:16} {reading.reason}")
    if len(lines) != len(LIMITS):
        raise SystemExit(f"{len(lines)} limits hold on account c, not {len(LIMITS)}")
    return lines


async def gate_parts(services: Services, config: Config, runs: int) -> dict[str, list[float]]:
    """prepare's steps for account c, each timed apart (ms), `runs` times, each run in a
    read transaction of its own, after the timed rounds: the same calls the gate makes,
    and `SELECT 1` in the same session as the floor of one statement."""
    gate, database = services.risk.gate, services.database.database
    user = services.users.solo_user_id
    account_id = config.account_id
    intent = OrderIntent(symbol=SYMBOL, side=OrderSide.BUY, notional=Decimal(50), rests=False)
    parts: dict[str, list[float]] = {}

    def note(label: str, started: float) -> None:
        parts.setdefault(label, []).append((time.perf_counter() - started) * 1000)

    for _ in range(runs):
        async with database.read() as session:
            account = await account_repo.find_account(session, user, account_id)
            book = ledger.Book.of(account, await account_repo.balances_of(session, account_id))
            started = time.perf_counter()
            await session.execute(text("SELECT 1"))
            note("SELECT 1 (the floor)", started)
            started = time.perf_counter()
            await risk_repo.engaged_over(session, user_id=user, account_id=account_id)
            note("kill switches read", started)
            started = time.perf_counter()
            limits = await risk_repo.limits_of(
                session, user_id=user, account_id=account_id, active=True
            )
            rules = [rule_of(limit) for limit in limits]
            note("limits read (7 rows)", started)
            started = time.perf_counter()
            state = await gate.account_state(session, book, rules)
            note("account_state (all)", started)
            started = time.perf_counter()
            await risk_repo.exposure_rows(session, account_id)
            note("  positions + open orders (one read)", started)
            started = time.perf_counter()
            await gate.rules(session, account)
            note("rules, cached by risk_version", started)
            started = time.perf_counter()
            breaches(evaluate(state, rules, intent))
            note("evaluate 7 limits (check)", started)
    return parts


# -- figures ------------------------------------------------------------------------------


def pct(values: Sequence[float] | np.ndarray[Any, Any], q: float) -> float:
    return float(np.percentile(values, q))


def interval(
    base: Sequence[float], other: Sequence[float], q: float, rng: np.random.Generator
) -> tuple[float, float]:
    """90% bootstrap interval of percentile q of `other` minus that of `base`."""
    a, b = np.asarray(base), np.asarray(other)
    da = np.percentile(rng.choice(a, (BOOTSTRAP, a.size)), q, axis=1)
    db = np.percentile(rng.choice(b, (BOOTSTRAP, b.size)), q, axis=1)
    low, high = np.percentile(db - da, [5, 95])
    return float(low), float(high)


def report(
    backend: str,
    configs: list[Config],
    parts: dict[str, list[float]],
    args: argparse.Namespace,
) -> bool:
    """Print the figures; True when c's added p99 is under the goal."""
    rng = np.random.default_rng(args.seed)
    n = len(configs[0].wall)
    print(
        f"\n{backend}: {args.rounds} rounds x {args.orders} orders per configuration "
        f"({n} each, after {args.warmup} warm-up), interleaved, order rotated each round; "
        f"risk monitor {'on' if args.monitor else 'off'}"
    )
    print(
        f"{'per order':26} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU p50':>8}"
    )
    for c in configs:
        print(
            f"{c.label:26} {pct(c.wall, 50):8.3f} {pct(c.wall, 90):8.3f} {pct(c.wall, 99):8.3f} "
            f"{max(c.wall):8.3f} {statistics.median(c.cpu):8.3f}"
        )
    floor = configs[0]
    print(
        f"{'added over a':26} {'+p50 ms':>8} {'90% CI':>17} {'+p99 ms':>8} {'90% CI':>17} "
        f"{'+CPU p50':>8}"
    )
    met = True
    for c in configs[1:]:
        d50 = pct(c.wall, 50) - pct(floor.wall, 50)
        d99 = pct(c.wall, 99) - pct(floor.wall, 99)
        lo50, hi50 = interval(floor.wall, c.wall, 50, rng)
        lo99, hi99 = interval(floor.wall, c.wall, 99, rng)
        dcpu = statistics.median(c.cpu) - statistics.median(floor.cpu)
        print(
            f"{c.label:26} {d50:+8.3f} [{lo50:+7.3f},{hi50:+7.3f}] {d99:+8.3f} "
            f"[{lo99:+7.3f},{hi99:+7.3f}] {dcpu:+8.3f}"
        )
        if c.key == "c":
            met = d99 < GOAL_MS
    print(
        f"{'the gate alone, per order':26} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for c in configs[1:]:
        split = {
            f"{c.key}. prepare + check": [1000 * (g.prepare + (g.check or 0.0)) for g in c.gate],
            "   prepare": [1000 * g.prepare for g in c.gate],
            "   check": [1000 * g.check for g in c.gate if g.check is not None],
        }
        for label, values in split.items():
            if values:
                print(f"{label:26} {pct(values, 50):8.3f} {pct(values, 90):8.3f} "
                      f"{pct(values, 99):8.3f} {max(values):8.3f}")  # fmt: skip
        print(f"{'':4}limits checked on {c.limited} of {len(c.gate)} orders")
    print("per round, p50 / p99 ms (a, b, c):")
    for r in range(args.rounds):
        cells = [f"{pct(c.rounds[r], 50):.3f}/{pct(c.rounds[r], 99):.3f}" for c in configs]
        first = configs[r % 3].key
        print(f"{'':4}round {r + 1} (from {first}): " + "  ".join(cells))
    print("SQL statements per order (" + ", ".join(KINDS) + "):")
    for c in configs:
        print(f"{'':4}{c.label:22} " + " / ".join(str(c.statements[k]) for k in KINDS))
    print(f"prepare's steps for account c, timed apart ({args.part_runs} runs):")
    for label, values in parts.items():
        print(f"{'':4}{label:26} p50 {pct(values, 50):6.3f}  p99 {pct(values, 99):6.3f} ms")
    verdict = "met" if met else "NOT met"
    print(f"goal: the gate with 7 limits adds < {GOAL_MS:.0f} ms at p99: {verdict}")
    return met


# -- databases ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    name = f"cival_bench_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run_backend(
    backend: str, url: Callable[[Path], str] | str, args: argparse.Namespace
) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            environment="test",
            log_level="WARNING",
            database={"url": url(Path(tmp)) if callable(url) else url},
            redis={"url": ""},
            market_data={"market_data_stream": False, "simulation_seed": args.seed},
            agents={"scheduler_enabled": False},
            risk={"monitor_enabled": args.monitor},
        )
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
            services: Services = app.state.services
            configs = await measure(services, args)
            parts = await gate_parts(services, configs[2], args.part_runs)
            met = report(backend, configs, parts, args)
            print("the 7 limits on account c at the end, as the risk monitor measures them:")
            print("\n".join(await limits_at_end(services, configs[2].account_id)))
            return met


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300, help="per configuration and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=60, help="orders per configuration")
    parser.add_argument("--backend", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--monitor", action="store_true", help="keep the risk monitor on")
    parser.add_argument("--part-runs", type=int, default=300, help="of prepare's steps apart")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.orders < len(KINDS) or args.rounds < 1:
        parser.error("--orders must be at least 4 and --rounds at least 1")
    print(
        f"pid {os.getpid()}, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    results = []
    if args.backend in ("both", "sqlite"):
        results.append(
            await run_backend("SQLite", lambda d: f"sqlite+aiosqlite:///{d}/bench.db", args)
        )
    if args.backend in ("both", "postgres"):
        async with postgres_database() as url:
            results.append(await run_backend("PostgreSQL", url, args))
    print("\nload average at the end " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if not all(results):
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
