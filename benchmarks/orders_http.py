"""Market orders per second through HTTP on PostgreSQL, next to the floor, with wrk.

Run: .venv/bin/python benchmarks/orders_http.py [--duration 10] [--warmup 2]
         [--connections 32] [--repeat 3] [--sql] [--profile] [--app-dir DIR]
Needs `wrk` (Debian: `apt-get install -y wrk`), PostgreSQL on 127.0.0.1:5432 (user
postgres, trust auth) and, for --profile, py-spy (`.venv/bin/pip install py-spy`).
Under three minutes with the defaults (--sql and --profile add half a minute); exits 1
unless the verdict is PASS.

The load generator is wrk with benchmarks/wrk_post.lua, one connection per wrk thread
(`-t N -c N`): wrk's Lua `request()` does not know which connection it serves, so a
thread with a single connection is how each connection gets a body of its own. Each
thread stops right after its first response past the deadline, so no request is left
unanswered and the 2xx counted are exactly the requests the server completed; the rate
is those answers over the time from the first request to the last answer.

First, once, the generator's ceiling with the same threads and connections: wrk POSTing
the same bodies to a static responder (a few lines of asyncio on uvloop), and GETting
/ping of the floor app (FastAPI + uvicorn, no database). Then `--repeat` rounds of a, b
and c, alternated, each scenario a fresh server on a fresh database (a warm-up run of
`--warmup` s, then the measured run of `--duration` s):
- a. floor: a bare FastAPI endpoint doing one INSERT per request, served as Cival serves
  itself (`uvicorn.run(app, log_config=None, access_log=False)`, uvloop + httptools, a
  pool of 10 + 20, WARNING logs);
- b. Cival, `--connections` connections, one account each: solo mode has one user, and
  the API's way to more accounts is an agent each (POST /api/v1/agents funds the agent's
  own paper account); each connection's orders name its account in `account_id`;
- c. Cival, `--connections` connections on the default account (no `account_id`): the
  orders of one account serialize on its row lock. The time the account is held per
  order is read from PostgreSQL: pg_stat_activity is sampled every 20 ms during the
  run. The holder is a transaction with a transaction id (its SELECT ... FOR UPDATE
  locked the row; a BEGIN, the pool's pre-ping or a waiter has none) not waiting on a
  lock; a queued order waits with `wait_event_type = 'Lock'`. Held fraction x run time /
  orders is the hold per order (= run time / orders when the lock never idles), split
  into PostgreSQL executing a statement (`active`) and PostgreSQL waiting for Cival
  (`idle in transaction`: Python, the event loop, the network). pg_stat_statements is
  not used: loading it needs a server restart.
Cival runs as the README and the Dockerfile start it (`python main_consolidated.py` in
its data dir, no Cival setting inherited from the environment), on PostgreSQL, Redis
off, LOG_LEVEL=WARNING, LOG_FORMAT=json (the image's), the rate limit lifted (a limit of
1000000000/minute, still checked on every request), the simulated market ticking every
second (the book refills). Each order: a 0.001 BTC market buy. Each row prints req/s,
p50/p99 latency, 2xx, non-2xx (socket errors and unanswered requests included: any is
printed loudly and fails the verdict) and the server process's CPU per request. After
each run the database must hold exactly one row per 2xx (per account in b) and every
Cival order must be filled, or the verdict fails.

Goals, on the medians of the rounds: b / floor >= 0.33, c / floor >= 0.2.

--sql: orders placed one at a time on an agent's account through a PostgreSQL
wire-protocol proxy (benchmarks/http_bench.py) list the statements and round trips of
one order; no server log needed. --profile: scenario b once more, py-spy sampling the
Cival process (250 Hz, GIL holders, main thread) through the measured run: the CPU per
order and where it goes, by concern, library and function; the raw stacks are kept for
a flame graph. --app-dir serves another Cival checkout (default: this repository), e.g.
a `git archive` export of a commit while the work tree is being edited. --repeat 0 runs
only the ceiling, then --sql and --profile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
# Run as a script: the repository root is not on the path otherwise.
sys.path.insert(0, str(ROOT))

from benchmarks.http_bench import (  # noqa: E402
    PG_HOST,
    PG_PORT,
    PgTrace,
    Run,
    Server,
    WireEvent,
    cival_server,
    cpu_seconds,
    dsn,
    floor_server,
    fresh_database,
    print_profile,
    run_wrk,
    static_server,
    wrk_binary,
)

ORDER_PATH = "/api/v1/trading/paper/order"
ORDER = {"symbol": "BTC/USD", "side": "buy", "quantity": "0.001"}
SAMPLE_INTERVAL = 0.02  # pg_stat_activity sampling of scenario c
PROFILE_RATE = 250


# -- checks ----------------------------------------------------------------------------


@dataclass
class Check:
    """What the database holds after a scenario, against what wrk was answered."""

    answered_2xx: int
    in_database: int
    filled: int
    mismatched_accounts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return (
            f"orders in database {self.in_database}, 2xx answered {self.answered_2xx}, "
            f"filled {self.filled}: {verdict}"
        )


async def check_floor(database: str, runs: list[Run]) -> Check:
    conn = await asyncpg.connect(dsn(database))
    try:
        rows = await conn.fetchval("SELECT count(*) FROM floor_orders")
    finally:
        await conn.close()
    answered = sum(r.ok for r in runs)
    check = Check(answered, rows, rows)
    if rows != answered:
        check.problems.append(f"{rows} rows for {answered} 2xx")
    return check


async def check_cival(database: str, runs: list[Run], accounts: list[str] | None) -> Check:
    """Orders in the database == 2xx answered (per account when each connection had its
    own: thread i sent to accounts[i]), and every order filled completely."""
    conn = await asyncpg.connect(dsn(database))
    try:
        rows = await conn.fetch(
            "SELECT account_id::text AS account, count(*) AS orders, count(*) FILTER "
            "(WHERE status = 'filled' AND filled_quantity = quantity) AS filled "
            "FROM orders GROUP BY account_id"
        )
    finally:
        await conn.close()
    by_account = {r["account"]: (r["orders"], r["filled"]) for r in rows}
    in_db = sum(n for n, _ in by_account.values())
    filled = sum(f for _, f in by_account.values())
    answered = sum(r.ok for r in runs)
    check = Check(answered, in_db, filled)
    if in_db != answered:
        check.problems.append(f"{in_db} orders in the database for {answered} 2xx")
    if filled != in_db:
        check.problems.append(f"{in_db - filled} orders not filled")
    if accounts is None and len(by_account) > 1:
        check.problems.append(f"orders on {len(by_account)} accounts, not one")
    if accounts is not None:
        for i, account in enumerate(accounts):
            expected = sum(r.ok_per_thread[i] for r in runs if i < len(r.ok_per_thread))
            if by_account.get(account, (0, 0))[0] != expected:
                check.mismatched_accounts += 1
        if check.mismatched_accounts:
            check.problems.append(f"{check.mismatched_accounts} accounts off their 2xx")
        strays = set(by_account) - set(accounts)
        if strays:
            check.problems.append(f"orders on {len(strays)} accounts not in the run")
    return check


# -- scenario c: the account lock, seen from PostgreSQL ----------------------------------

# The holder: a transaction with a transaction id (SELECT ... FOR UPDATE assigns one when
# it locks the account's row; a BEGIN, the pool's pre-ping or a waiter has none yet) that
# is not waiting on a lock. A waiter: `wait_event_type = 'Lock'`.
_ACTIVITY = """
SELECT
  count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,
  count(*) FILTER (WHERE backend_xid IS NOT NULL AND wait_event_type IS DISTINCT FROM 'Lock'
                   AND state = 'active') AS holder_active,
  count(*) FILTER (WHERE backend_xid IS NOT NULL AND state LIKE 'idle in transaction%')
    AS holder_idle
FROM pg_stat_activity
WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


@dataclass
class LockSamples:
    samples: int = 0
    held: int = 0
    queued: int = 0
    holder_active: int = 0
    holder_idle: int = 0

    def pct(self, n: int, of: int | None = None) -> float:
        whole = self.samples if of is None else of
        return 100 * n / whole if whole else 0.0


async def sample_lock(database: str, stop: asyncio.Event) -> LockSamples:
    """Every SAMPLE_INTERVAL s: does an order transaction hold the account, is another
    waiting on a lock, and is the holder's backend executing (active) or waiting for
    Cival (idle in transaction)? (A market-data flush, every 5 s, can pass for a holder.)"""
    found = LockSamples()
    conn = await asyncpg.connect(dsn(database))
    try:
        while not stop.is_set():
            row = await conn.fetchrow(_ACTIVITY, database)
            found.samples += 1
            if row["holder_active"] or row["holder_idle"]:
                found.held += 1
                if row["holder_active"]:
                    found.holder_active += 1
                else:
                    found.holder_idle += 1
            if row["waiting"]:
                found.queued += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)
    finally:
        await conn.close()
    return found


async def create_accounts(base: str, count: int) -> list[str]:
    """`count` funded paper accounts of the solo user: one agent each (the API's way to
    a second account; agents are created inactive, so none trades by itself)."""
    accounts = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for i in range(count):
            response = await client.post(
                "/api/v1/agents",
                json={
                    "name": f"bench-{i:03d}",
                    "symbols": ["BTC/USD"],
                    "paper_balance": "1000000000",
                },
            )
            response.raise_for_status()
            accounts.append(str(response.json()["account_id"]))
    return accounts


# -- scenarios ---------------------------------------------------------------------------


@dataclass
class Outcome:
    run: Run
    check: Check | None = None
    lock: LockSamples | None = None
    cpu_ms: float | None = None  # the server process's CPU per request, measured run

    @property
    def passed(self) -> bool:
        return self.run.failures == 0 and (self.check is None or self.check.ok)


async def measured(
    server: Server, url: str, args: argparse.Namespace, bodies: list[str]
) -> tuple[Run, float | None]:
    """The measured run, and the server process's CPU (user + system) per request."""
    before = cpu_seconds(server.process.pid)
    run = await run_wrk(url, seconds=args.duration, connections=args.connections, bodies=bodies)
    used = cpu_seconds(server.process.pid) - before
    return run, (1000 * used / run.answered if run.answered else None)


def floor_bodies(connections: int) -> list[str]:
    return [json.dumps(ORDER | {"account_id": str(uuid.uuid4())}) for _ in range(connections)]


async def scenario_floor(tmp: Path, args: argparse.Namespace) -> Outcome:
    async with fresh_database("bench_floor") as database, floor_server(tmp, database) as s:
        bodies = floor_bodies(args.connections)
        url = f"{s.base}/order"
        warm = await run_wrk(url, seconds=args.warmup, connections=args.connections, bodies=bodies)
        run, cpu_ms = await measured(s, url, args, bodies)
        return Outcome(run, await check_floor(database, [warm, run]), cpu_ms=cpu_ms)


async def scenario_accounts(args: argparse.Namespace) -> Outcome:
    async with fresh_database("bench_cival") as database, cival_server(args.app_dir, database) as s:
        accounts = await create_accounts(s.base, args.connections)
        bodies = [json.dumps(ORDER | {"account_id": a}) for a in accounts]
        url = s.base + ORDER_PATH
        warm = await run_wrk(url, seconds=args.warmup, connections=args.connections, bodies=bodies)
        run, cpu_ms = await measured(s, url, args, bodies)
        return Outcome(run, await check_cival(database, [warm, run], accounts), cpu_ms=cpu_ms)


async def scenario_one_account(args: argparse.Namespace) -> Outcome:
    async with fresh_database("bench_cival") as database, cival_server(args.app_dir, database) as s:
        bodies = [json.dumps(ORDER)]  # no account_id: the default account, for all
        url = s.base + ORDER_PATH
        warm = await run_wrk(url, seconds=args.warmup, connections=args.connections, bodies=bodies)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_lock(database, stop))
        try:
            run, cpu_ms = await measured(s, url, args, bodies)
        finally:
            stop.set()
        lock = await sampler
        return Outcome(run, await check_cival(database, [warm, run], None), lock, cpu_ms)


# -- printing ----------------------------------------------------------------------------

HEADER = (
    f"{'':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'2xx':>7} {'non-2xx':>8} {'CPU ms/req':>10}"
)


def row(label: str, run: Run, cpu_ms: float | None = None) -> str:
    bad = run.failures
    cpu = f"{cpu_ms:10.2f}" if cpu_ms is not None else ""
    line = f"{label:44} {run.rps:8.0f} {run.p50_ms:8.1f} {run.p99_ms:8.1f} {run.ok:7d} "
    line += f"{bad:8d} {cpu}"
    if bad:
        line += (
            f"\n{'':4}!!! {bad} FAILED REQUESTS: statuses {run.statuses}, errors "
            f"{run.errors}, sent {run.sent}, answered {run.answered} !!!"
        )
    return line.rstrip()


def lock_lines(outcome: Outcome) -> list[str]:
    lock, run = outcome.lock, outcome.run
    if lock is None or not lock.samples or not run.ok:
        return []
    per_order_ms = 1000 * run.seconds / run.ok
    held_ms = per_order_ms * lock.held / lock.samples
    return [
        f"{'':4}account held per order: {held_ms:.2f} ms (held in {lock.pct(lock.held):.0f}% "
        f"of {lock.samples} samples x {run.seconds:.1f} s / {run.ok} orders; run time / "
        f"orders = {per_order_ms:.2f} ms)",
        f"{'':4}an order queued on the lock in {lock.pct(lock.queued):.0f}% of samples; "
        f"while held, PostgreSQL executing {lock.pct(lock.holder_active, lock.held):.0f}%, "
        f"waiting for Cival (idle in transaction) {lock.pct(lock.holder_idle, lock.held):.0f}%",
    ]


def verdict(name: str, ratios: list[float], goal: float) -> tuple[str, bool]:
    ratio = statistics.median(ratios)
    met = ratio >= goal
    return (
        f"{name}, median of {len(ratios)}: {ratio:.2f} (range {min(ratios):.2f} to "
        f"{max(ratios):.2f}; {'meets' if met else 'misses'} the goal of at least {goal})",
        met,
    )


async def ceiling(tmp: Path, args: argparse.Namespace) -> None:
    seconds, connections = args.ceiling_seconds, args.connections
    bodies = floor_bodies(connections)
    async with static_server(tmp) as s:
        static = await run_wrk(
            f"{s.base}/order", seconds=seconds, connections=connections, bodies=bodies
        )
    async with fresh_database("bench_ping") as database, floor_server(tmp, database) as s:
        ping = await run_wrk(
            f"{s.base}/ping", seconds=seconds, connections=connections, bodies=None, method="GET"
        )
    print("generator ceiling (wrk, the same threads and connections):")
    print(HEADER)
    print(row("static responder (asyncio + uvloop), POST", static))
    print(row("floor app GET /ping (FastAPI, no database)", ping))
    print()


# -- --sql and --profile -----------------------------------------------------------------


def short_sql(text: str, width: int = 150) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def print_sql(events: list[WireEvent], orders: int, elapsed: float) -> None:
    """The statements of `orders` orders (marked by "order" events), per order."""
    per = Counter((e.kind, e.text) for e in events if e.kind in ("query", "execute"))
    kinds = Counter(e.kind for e in events)
    statements = kinds["query"] + kinds["execute"]
    print(f"SQL of one order: {orders} orders placed one at a time through a wire proxy")
    print(
        f"  per order: {statements / orders:.1f} statements ({kinds['query'] / orders:.1f} "
        f"simple queries, {kinds['execute'] / orders:.1f} prepared executions), "
        f"{(kinds['query'] + kinds['sync']) / orders:.1f} round trips to PostgreSQL, "
        f"{kinds['parse'] / orders:.2f} new prepares; {1000 * elapsed / orders:.1f} ms an "
        f"order, one at a time"
    )
    chunks: list[list[WireEvent]] = []
    for e in events:
        if e.kind == "order":
            chunks.append([])
        elif chunks:
            chunks[-1].append(e)
    middle = len(chunks) // 2
    print(f"  order {middle + 1} of {orders}, as sent (cN: the client's connection):")
    for e in chunks[middle]:
        if e.kind in ("query", "execute", "parse"):
            kind = "prepare" if e.kind == "parse" else e.kind
            print(f"    c{e.connection} {kind:7} {short_sql(e.text, 120)}")
    first_seen: dict[tuple[str, str], int] = {}
    for e in events:
        first_seen.setdefault((e.kind, e.text), len(first_seen))
    print("  each statement, times per order:")
    for kind, text in sorted(per, key=first_seen.__getitem__):
        print(f"    {per[(kind, text)] / orders:5.2f}  {short_sql(text, 130)}")
    print()


async def sql_trace(args: argparse.Namespace, orders: int = 20) -> None:
    """Orders placed one at a time on an agent's account (as in b), through the proxy."""
    trace = PgTrace()
    await trace.start()
    try:
        async with (
            fresh_database("bench_sql") as database,
            cival_server(args.app_dir, database, db_port=trace.port) as s,
            httpx.AsyncClient(base_url=s.base, timeout=30) as client,
        ):
            body = ORDER | {"account_id": (await create_accounts(s.base, 1))[0]}
            for _ in range(20):  # warm: prepared statements, caches
                (await client.post(ORDER_PATH, json=body)).raise_for_status()
            trace.recording = True
            started = time.perf_counter()
            for i in range(orders):
                trace.mark(str(i))
                (await client.post(ORDER_PATH, json=body)).raise_for_status()
            elapsed = time.perf_counter() - started
            trace.recording = False
    finally:
        trace.stop()
    print_sql(trace.events, orders, elapsed)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("orders_http: py-spy not found; install it: .venv/bin/pip install py-spy")
    return found


async def profile(args: argparse.Namespace) -> None:
    spy = py_spy()
    raw = Path(tempfile.mkdtemp(prefix="orders-profile-")) / "cival-b.raw.txt"
    async with fresh_database("bench_cival") as database, cival_server(args.app_dir, database) as s:
        accounts = await create_accounts(s.base, args.connections)
        bodies = [json.dumps(ORDER | {"account_id": a}) for a in accounts]
        url = s.base + ORDER_PATH
        await run_wrk(url, seconds=args.warmup, connections=args.connections, bodies=bodies)
        spy_process = await asyncio.create_subprocess_exec(
            spy, "record", "-p", str(s.process.pid), "-r", str(PROFILE_RATE), "--gil",
            "--threads", "-d", str(math.ceil(args.duration) + 2), "-f", "raw",
            "--full-filenames", "--nolineno", "-o", str(raw),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(1)  # py-spy attached
        run, cpu_ms = await measured(s, url, args, bodies)
        _, spy_err = await spy_process.communicate()
        if spy_process.returncode != 0:
            raise RuntimeError(f"py-spy failed: {spy_err.decode()[-2000:]}")
    print(f"profile of scenario b (py-spy {PROFILE_RATE} Hz, GIL holders, pausing to sample):")
    print(HEADER)
    print(row("b. cival, under py-spy (slower than above)", run, cpu_ms))
    print_profile(raw, args.app_dir, (cpu_ms or 0) * run.answered / 1000, run.answered)
    print(f"  raw stacks (collapsed, for a flame graph): {raw}")
    print()


# -- main --------------------------------------------------------------------------------


async def rounds(tmp: Path, args: argparse.Namespace) -> tuple[bool, bool]:
    """The alternated rounds and the verdicts: (every request and order correct, goals met)."""
    correct = True
    b_ratios: list[float] = []
    c_ratios: list[float] = []
    for round_no in range(1, args.repeat + 1):
        floor = await scenario_floor(tmp, args)
        b = await scenario_accounts(args)
        c = await scenario_one_account(args)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"round {round_no} of {args.repeat} (load average {load} on {os.cpu_count()} cores)")
        print(HEADER)
        for label, outcome in (
            ("a. floor: bare FastAPI + one INSERT", floor),
            (f"b. cival, {args.connections} accounts (one a connection)", b),
            ("c. cival, one account", c),
        ):
            print(row(label, outcome.run, outcome.cpu_ms))
            if outcome.check is not None:
                print(f"{'':4}{outcome.check.line()}")
            for line in lock_lines(outcome):
                print(line)
            correct = correct and outcome.passed
        b_ratios.append(b.run.rps / floor.run.rps)
        c_ratios.append(c.run.rps / floor.run.rps)
        print(f"{'b / floor':44} {b_ratios[-1]:8.2f}")
        print(f"{'c / floor':44} {c_ratios[-1]:8.2f}")
        print()
        sys.stdout.flush()
    line_b, met_b = verdict(f"b / floor ({args.connections} accounts)", b_ratios, 0.33)
    line_c, met_c = verdict("c / floor (one account)", c_ratios, 0.2)
    print(line_b)
    print(line_c)
    if not correct:
        print("!!! FAILED: non-2xx answers, socket errors or database mismatches above !!!")
    print(
        f"verdict: {'PASS' if correct and met_b and met_c else 'FAIL'} (b goal "
        f"{'met' if met_b else 'missed'}, c goal {'met' if met_c else 'missed'}, "
        f"requests and orders {'all correct' if correct else 'NOT ALL CORRECT'})"
    )
    print()
    return correct, met_b and met_c


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10, help="s of each measured run")
    parser.add_argument("--warmup", type=float, default=2, help="s of warm-up per server")
    parser.add_argument("--connections", type=int, default=32, help="= wrk threads")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the medians count")
    parser.add_argument("--ceiling-seconds", type=float, default=5)
    parser.add_argument("--sql", action="store_true", help="list the SQL of one order")
    parser.add_argument("--profile", action="store_true", help="py-spy on scenario b")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the Cival checkout")
    args = parser.parse_args()
    args.app_dir = args.app_dir.resolve()
    wrk_binary()
    if args.profile:
        py_spy()
    print(
        f"wrk, {args.connections} threads x 1 connection, {args.duration:g} s measured after "
        f"{args.warmup:g} s of warm-up per server; PostgreSQL {PG_HOST}:{PG_PORT}; Cival "
        f"from {args.app_dir}\n"
    )
    correct = met = True
    with tempfile.TemporaryDirectory(prefix="orders-http-") as tmp:
        await ceiling(Path(tmp), args)
        if args.repeat > 0:
            correct, met = await rounds(Path(tmp), args)
    if args.sql:
        await sql_trace(args)
    if args.profile:
        await profile(args)
    return 0 if correct and met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
