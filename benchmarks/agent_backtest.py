"""An agent backtest of 1,000 decisions on the local provider. Goal: under 30 s.

The real services (built from the settings as the server builds them, on a fresh
SQLite database in a temporary directory; no market stream, no scheduler) with the
market's own history: the simulated exchange's deterministic backfill of 5-minute
candles. One agent on BTC/USD and ETH/USD, the `local` provider, decides every 5
minutes for `--decisions` decisions ending ten minutes ago: each decision's context is
assembled from the gated market (AGENT_CANDLE_LIMIT closed candles per symbol, their
indicators), the rules answer, sizing and the risk checks run, and orders fill on the
next candle. `AgentBacktester.backtest` is timed whole, `--runs` times (median and
worst printed): reading the candles, the loop, the metrics and buy-and-hold.

The baseline, in the same run: the same decisions' pure parts alone, that is the local
rules (`decide_by_rules`) on the very contexts the last run built (each timed run hands
its contexts to a list, an append per decision), and buy-and-hold of one symbol over
the period through the strategy engine. What the backtest adds over the rules is
building each context (the gated read, the indicators, the pydantic models) and the
simulated account.

Times are wall-clock (`time.perf_counter`). Exits 1 when the goal is missed.

    .venv/bin/python benchmarks/agent_backtest.py [--decisions 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

# Run as a script: the repository root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_settings
from database.orm import User
from models.agent_backtests import AgentBacktestRequest
from models.agents import AgentCreate
from models.decisions import AgentContext
from services.backtests.engine import BacktestConfig, CandleSeries
from services.backtests.vectorized import run_vectorized
from services.container import Services, build_services
from services.llm.providers.local import decide_by_rules

GOAL_SECONDS = 30.0
STEP = timedelta(minutes=5)


async def measure(decisions: int, runs: int) -> int:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            data_dir=Path(data_dir),
            environment="test",
            redis={"url": ""},
            market_data={"market_data_stream": False},
            agents={"scheduler_enabled": False},
            risk={"monitor_enabled": False},
            log_level="WARNING",
        )
        services = build_services(settings)
        await services.registry.start()
        try:
            return await _measure(services, decisions, runs)
        finally:
            await services.registry.stop()


async def _measure(services: Services, decisions: int, runs: int) -> int:
    async with services.database.database.transaction() as session:
        user = User(
            id=uuid.uuid4(), email=f"bench-{uuid.uuid4().hex[:6]}@localhost", display_name="Bench"
        )
        session.add(user)
    body = {
        "name": "Bench",
        "symbols": ["BTC/USD", "ETH/USD"],
        "llm_provider": "local",
        "paper_balance": "100000",
        "risk_tolerance": "0.8",
        "max_position_pct": "40",
        "personality": {"aggression": 0.8},
    }
    agent = await services.agents.create_agent(user.id, AgentCreate.model_validate(body))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    end = now - timedelta(minutes=10 + now.minute % 5)
    start = end - STEP * decisions
    request = AgentBacktestRequest.model_validate(
        {"start": start.isoformat(), "end": end.isoformat(), "every": "5m"}
    )
    backtester = services.agent_backtests
    times = []
    read = None
    contexts: list[AgentContext] = []
    for _ in range(runs):
        contexts.clear()
        began = time.perf_counter()
        read = await backtester.backtest(user.id, agent.id, request, observe=contexts.append)
        times.append(time.perf_counter() - began)
    if read is None or read.result is None:
        raise SystemExit("the backtest returned no result")
    result = read.result

    began = time.perf_counter()
    for context in contexts:
        decide_by_rules(context)
    rules = time.perf_counter() - began

    candles = await services.backtests.read_candles(
        "BTC/USD", timeframe="5m", start=start - STEP, end=end
    )
    series = CandleSeries.from_candles(candles)
    config = BacktestConfig(initial_cash=Decimal(100_000), fee_bps=Decimal(20))
    began = time.perf_counter()
    run_vectorized(series, np.ones(len(series), dtype=np.int8), config)
    hold = time.perf_counter() - began

    median, worst = statistics.median(times), max(times)
    print(f"agent backtest, local provider, 2 symbols, {result.decisions} decisions every 5m")
    print(f"  whole run: median {median:.3f} s, worst {worst:.3f} s over {runs} runs")
    print(f"  per decision: {median / result.decisions * 1000:.2f} ms")
    print(f"  actions: {dict(sorted(result.actions.items()))}; fills {len(result.fills)}")
    print(f"  metrics: total return {result.metrics.total_return}, trades {result.metrics.trades}")
    print("baseline, same run:")
    print(
        f"  the local rules alone on the same {len(contexts)} contexts: {rules:.3f} s "
        f"({rules / max(len(contexts), 1) * 1000:.3f} ms each)"
    )
    print(
        f"  buy-and-hold of BTC/USD, {len(series)} candles, strategy engine: {hold * 1000:.2f} ms"
    )
    met = worst < GOAL_SECONDS
    print(f"goal: under {GOAL_SECONDS:.0f} s -> {'met' if met else 'MISSED'}")
    return 0 if met else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.exit(asyncio.run(measure(args.decisions, args.runs)))


if __name__ == "__main__":
    main()
