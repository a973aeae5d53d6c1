"""100 agents deciding at once on PostgreSQL, against a model that answers after 300 ms.

Run: .venv/bin/python benchmarks/agents_cycle.py [--agents 100] [--latency 0.3] [--rounds 3]

The real app (services started, market stepped by hand, scheduler off) on a fresh
PostgreSQL database; every agent uses the `openai_compatible` provider, so the real
openai SDK calls a scripted OpenAI-compatible server (tests/llm_server.py, in its own
process, as a remote model would be) that answers after `--latency` seconds. Half
the agents are told to buy a little BTC, half to hold, so both paths (an order on
the agent's account, and none) are in the figures.

Two measurements, each decision's overhead being its cycle time minus the time its
model call took (context, validation, risk check, execution, logging):
- one agent at a time, `--agents` decisions in a row: the loop's own overhead per
  decision, p50 and p99 (goal: under 20 ms at p99);
- all agents at once, `--rounds` times: the round's wall time next to one model
  latency (goal: little more than it), and the overhead per decision in the crowd,
  which adds the wait for the one event loop the agents share; and this process's
  CPU per decision in the crowd, which sets the floor of a round in one process
  (agents x CPU per decision, when that exceeds one model latency).
One-at-a-time overheads are also shown for the buys and the holds apart.
The pool is sized for the crowd (DATABASE_POOL_SIZE=40). The baseline in the same
run: one bare transaction (an INSERT and a SELECT through the same engine), what any
logged decision costs at the least on this machine and database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asgi_lifespan import LifespanManager  # noqa: E402

from core.config import load_settings  # noqa: E402
from main_consolidated import create_app  # noqa: E402
from models.agents import AgentCreate  # noqa: E402
from services.container import Services  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
MODEL = "bench-model"

# The model server, run by this script in a process of its own (fixed code, no input).
SERVER = """
import asyncio, json, sys
from tests.llm_server import Reply, ScriptedModel, serve

async def main():
    agents, delay = int(sys.argv[1]), float(sys.argv[2])
    buy, hold = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    model = ScriptedModel(delay=delay, default=Reply(hold))
    for i in range(agents + 1):
        model.script(f"Bench {i}", Reply(buy if i % 2 else hold))
    async with serve(model) as url:
        print(url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def buy() -> dict[str, Any]:
    return {
        "decision_type": "trade",
        "symbol": "BTC/USD",
        "side": "buy",
        "quantity": "0.001",
        "order_type": "market",
        "reasoning": "benchmark buy",
        "confidence_score": "0.8",
    }


def hold() -> dict[str, Any]:
    return {
        "decision_type": "hold",
        "symbol": "BTC/USD",
        "reasoning": "benchmark hold",
        "confidence_score": "0.6",
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


async def bare_transactions(services: Services, count: int) -> list[float]:
    """Milliseconds of one INSERT + SELECT transaction, `count` times in a row."""
    database = services.database.database
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE IF NOT EXISTS bench_floor (id uuid PRIMARY KEY)"))
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        async with database.transaction() as session:
            row_id = uuid.uuid4()
            await session.execute(text("INSERT INTO bench_floor (id) VALUES (:i)"), {"i": row_id})
            await session.execute(text("SELECT id FROM bench_floor WHERE id = :i"), {"i": row_id})
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def round_of(services: Services, agents: list[uuid.UUID]) -> tuple[float, float, list[float]]:
    """One cycle of every agent at once: (wall seconds, this process's CPU seconds,
    overheads in ms)."""
    user = services.users.solo_user_id
    started, cpu = time.perf_counter(), time.process_time()
    reads = await asyncio.gather(
        *(services.agents.execute_decision(user, agent_id) for agent_id in agents)
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    overheads = []
    for read in reads:
        if read.status.value == "error":
            raise RuntimeError(f"a cycle failed: {read.status_reason}")
        detail = await services.agents.get_decision(user, read.agent_id, read.id)
        model_ms = detail.llm_call.latency_ms if detail.llm_call else 0
        overheads.append(float((read.execution_time_ms or 0) - (model_ms or 0)))
    return wall, cpu, overheads


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    name = f"bench_agents_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    server = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed code, started once
        [sys.executable, "-c", SERVER, str(args.agents), str(args.latency),
         json.dumps(buy()), json.dumps(hold())],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        if server.stdout is None:
            raise RuntimeError("the model server has no stdout")
        base_url = (await asyncio.to_thread(server.stdout.readline)).strip()
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                data_dir=Path(tmp),
                log_level="WARNING",
                database={
                    "url": f"postgresql://postgres@127.0.0.1:5432/{name}",
                    "pool_size": 40,
                },
                redis={"url": ""},
                market_data={"market_data_stream": False},
                llm={
                    "openai_compatible_base_url": base_url,
                    "llm_prices": {MODEL: {"input": "0", "output": "0"}},
                },
                agents={"scheduler_enabled": False},
            )
            app = create_app(settings)
            async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
                services: Services = app.state.services
                await run(services, args)
    finally:
        server.terminate()
        server.wait(timeout=30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run(services: Services, args: argparse.Namespace) -> None:
    user = services.users.solo_user_id
    agents = []
    for i in range(args.agents + 1):
        body = AgentCreate(
            name=f"Bench {i}",
            symbols=["BTC/USD"],
            llm_provider="openai_compatible",
            llm_model=MODEL,
            paper_balance=Decimal(1_000_000),
            daily_cost_budget=Decimal(1),
        )
        agents.append((await services.agents.create_agent(user, body)).id)
    alone, crowd = agents[0], agents[1:]

    # Warm up: connections, prepared statements, the SDK client.
    for _ in range(5):
        await round_of(services, [alone])
    await round_of(services, crowd[:10])

    floor = await bare_transactions(services, 200)
    # Odd-numbered agents buy, even-numbered ones hold (the model server's script).
    solo: list[float] = []
    by_kind: dict[str, list[float]] = {"buy": [], "hold": []}
    for i, agent_id in enumerate(crowd, 1):
        measured = (await round_of(services, [agent_id]))[2]
        solo.extend(measured)
        by_kind["buy" if i % 2 else "hold"].extend(measured)
    walls, cpus, overheads = [], [], []
    for _ in range(args.rounds):
        wall, cpu, measured = await round_of(services, crowd)
        walls.append(wall)
        cpus.append(cpu)
        overheads.extend(measured)
        await services.market_data.advance(1)

    print(f"{len(crowd)} agents, model latency {args.latency * 1000:.0f} ms, PostgreSQL")
    print(f"  baseline, one bare transaction: p50 {statistics.median(floor):.1f} ms, "
          f"p99 {percentile(floor, 0.99):.1f} ms")  # fmt: skip
    print(f"  one at a time, {len(solo)} decisions: overhead p50 "
          f"{statistics.median(solo):.1f} ms, p99 {percentile(solo, 0.99):.1f} ms")  # fmt: skip
    for kind, values in by_kind.items():
        print(f"    {kind}s ({len(values)}): p50 {statistics.median(values):.1f} ms, "
              f"p99 {percentile(values, 0.99):.1f} ms")  # fmt: skip
    for i, (wall, cpu) in enumerate(zip(walls, cpus, strict=True), 1):
        print(f"  all at once, round {i}: {len(crowd)} cycles in {wall * 1000:.0f} ms "
              f"({wall / args.latency:.2f} x one model latency); this process's CPU "
              f"{cpu * 1000:.0f} ms, {cpu * 1000 / len(crowd):.1f} ms per decision")  # fmt: skip
    p50, p99 = statistics.median(overheads), percentile(overheads, 0.99)
    print(f"  all at once, overhead per decision over {len(overheads)}: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")  # fmt: skip
    # The agents share one event loop: a round cannot take less than its CPU time (nor
    # than one model latency, which the CPU of other cycles can overlap).
    per_decision = statistics.median(cpus) / len(crowd)
    floor_round = max(args.latency, per_decision * len(crowd))
    print(f"  one process's floor for a round: {len(crowd)} x {per_decision * 1000:.1f} ms "
          f"of CPU = {floor_round * 1000:.0f} ms "
          f"({floor_round / args.latency:.2f} x one model latency)")  # fmt: skip
    solo_p99 = percentile(solo, 0.99)
    verdict = "meets" if solo_p99 < 20 else "misses"
    print(f"  {verdict} the goal of p99 overhead under 20 ms (one at a time: {solo_p99:.1f} ms)")
    best = min(walls) / args.latency
    verdict = "meets" if best < 1.5 else "misses"
    print(f"  {verdict} the goal of a round in little more than one model latency "
          f"(best round {best:.2f} x; taken as under 1.5 x)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
