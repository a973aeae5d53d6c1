"""Live signals and backtest runs on the real server, through HTTP and /ws only. The
market runs 60 times faster than the wall clock here, so a minute's candle closes
every second: an active strategy's signals arrive on `signals` and are listed, an agent
that follows it sees them when it decides, and backtests run as jobs whose progress
comes on `backtests`, one of them cancelled while it waits its turn."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import event_of, subscriber
from tests.e2e.risk_helpers import error, new_agent, ok
from tests.e2e.server import LiveServer

API = "/api/v1"
STRATEGIES = f"{API}/strategies"
BACKTESTS = f"{API}/backtests"


@pytest.fixture(scope="module")
def module_env() -> dict[str, str]:
    return {
        "SIMULATION_SPEED": "60",
        "SIMULATION_TICK_SECONDS": "10",
        "AGENT_SCHEDULER_ENABLED": "false",
    }


async def new_strategy(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "name": f"e2e-live-{uuid.uuid4().hex[:8]}",
        "strategy_type": "trend_following",
        "parameters": {"fast_window": 3, "slow_window": 8},
        "symbols": ["BTC/USD"],
        "timeframe": "1m",
        **fields,
    }
    created: dict[str, Any] = ok(await http.post(STRATEGIES, json=body), 201)
    return created


def past(hours: float, *, ago: float = 2.0) -> dict[str, str]:
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=ago)
    return {"start": (end - timedelta(hours=hours)).isoformat(), "end": end.isoformat()}


async def test_an_active_strategy_signals_each_closed_candle(
    http: httpx.AsyncClient, server: LiveServer
) -> None:
    async with subscriber(server, "signals") as sub:
        strategy = await new_strategy(http)
        mine = event_of("strategy_signal", "signals")
        frame = await sub.until(lambda f: mine(f) and f["data"]["strategy_id"] == strategy["id"])

    signal = frame["data"]
    assert (signal["symbol"], signal["timeframe"]) == ("BTC/USD", "1m")
    assert signal["action"] in ("buy", "sell", "hold")
    assert 0 <= float(signal["strength"]) <= 100
    assert 0 <= float(signal["confidence"]) <= 1
    listed = ok(await http.get(f"{STRATEGIES}/{strategy['id']}/signals", params={"limit": 500}))
    assert signal["id"] in [s["id"] for s in listed["items"]]
    opened = [s["candle_open_time"] for s in listed["items"]]
    assert opened == sorted(opened, reverse=True)
    error(await http.get(f"{STRATEGIES}/{uuid.uuid4()}/signals"), 404, "not_found")
    error(
        await http.get(f"{STRATEGIES}/{strategy['id']}/signals?limit=0"), 422, "validation_failed"
    )


async def test_an_agent_that_follows_a_strategy_sees_its_signals(
    http: httpx.AsyncClient, server: LiveServer
) -> None:
    async with subscriber(server, "signals") as sub:
        strategy = await new_strategy(http)
        mine = event_of("strategy_signal", "signals")
        await sub.until(lambda f: mine(f) and f["data"]["strategy_id"] == strategy["id"])
    agent = await new_agent(http, strategies=[strategy["name"]])

    decided = ok(await http.post(f"{API}/agents/{agent['id']}/execute-decision"))

    decision = ok(await http.get(f"{API}/agents/{agent['id']}/decisions/{decided['id']}"))
    seen = decision["market_data"]["context"]["signals"]
    assert [s["strategy"] for s in seen] == [strategy["name"]]
    assert seen[0]["symbol"] == "BTC/USD"


async def test_a_strategy_backtest_job_reports_and_stores_what_the_route_answers(
    http: httpx.AsyncClient, server: LiveServer
) -> None:
    strategy = await new_strategy(http, symbols=[])
    body = {"symbol": "BTC/USD", "timeframe": "1m", **past(20), "slippage_bps": "1"}
    direct = ok(await http.post(f"{STRATEGIES}/{strategy['id']}/backtest", json=body))

    async with subscriber(server, "backtests") as sub:
        queued = ok(await http.post(f"{STRATEGIES}/{strategy['id']}/backtest-jobs", json=body), 202)
        assert queued["status"] == "queued"
        events = await sub.collect(
            lambda f: (
                event_of("backtest_progress", "backtests")(f) and f["data"]["id"] == queued["id"]
            ),
            lambda f: f["data"]["status"] in ("succeeded", "failed", "cancelled"),
        )

    assert events[-1]["data"]["status"] == "succeeded", events[-1]
    shares = [e["data"]["progress"] for e in events]
    assert shares == sorted(shares)
    assert shares[-1] == 1
    run = ok(await http.get(f"{BACKTESTS}/{queued['id']}"))
    assert run["result"]["trades"] == direct["trades"]
    assert run["result"]["metrics"] == direct["metrics"]
    stored = ok(await http.get(f"{BACKTESTS}/{direct['run_id']}"))
    assert stored["result"] == direct
    listed = ok(await http.get(BACKTESTS, params={"strategy_id": strategy["id"]}))
    assert [r["id"] for r in listed["items"]] == [queued["id"], direct["run_id"]]
    assert "result" not in listed["items"][0]
    error(await http.post(f"{BACKTESTS}/{queued['id']}/cancel"), 409, "backtest_ended")
    ok(await http.delete(f"{BACKTESTS}/{queued['id']}"), 204)
    error(await http.get(f"{BACKTESTS}/{queued['id']}"), 404, "not_found")


async def test_a_cancelled_job_ends_at_once_and_keeps_no_result(
    http: httpx.AsyncClient, server: LiveServer
) -> None:
    # Whether the cancel lands before the run ends depends on the machine: either way
    # the answer is the run's final state, as GET and the channel then show it.
    strategy = await new_strategy(http, symbols=[])
    long = {"symbol": "BTC/USD", "timeframe": "1m", **past(24 * 130)}
    async with subscriber(server, "backtests") as sub:
        queued = ok(await http.post(f"{STRATEGIES}/{strategy['id']}/backtest-jobs", json=long), 202)
        ended = ok(await http.post(f"{BACKTESTS}/{queued['id']}/cancel"))
        last = await sub.until(
            lambda f: (
                event_of("backtest_progress", "backtests")(f)
                and f["data"]["id"] == queued["id"]
                and f["data"]["status"] == ended["status"]
            )
        )

    assert ended["status"] in ("cancelled", "succeeded")
    run = ok(await http.get(f"{BACKTESTS}/{queued['id']}"))
    assert run["status"] == last["data"]["status"] == ended["status"]
    if ended["status"] == "cancelled":
        assert run["result"] is None
        assert run["error"] == "cancelled by its owner"
    else:
        assert run["result"] is not None


async def test_an_agent_backtest_job_is_stored_as_an_agent_run(
    http: httpx.AsyncClient, server: LiveServer
) -> None:
    agent = await new_agent(http)
    body = {**past(2), "every": "5m"}
    async with subscriber(server, "backtests") as sub:
        queued = ok(await http.post(f"{API}/agents/{agent['id']}/backtest-jobs", json=body), 202)
        await sub.until(
            lambda f: (
                event_of("backtest_progress", "backtests")(f)
                and f["data"]["id"] == queued["id"]
                and f["data"]["status"] == "succeeded"
            )
        )

    run = ok(await http.get(f"{BACKTESTS}/{queued['id']}"))
    assert (run["kind"], run["agent_id"]) == ("agent", agent["id"])
    assert run["result"]["run_id"] == queued["id"]
    assert run["result"]["result"]["decisions"] == 24
    direct = ok(await http.post(f"{API}/agents/{agent['id']}/backtest", json=body))
    assert direct["result"]["metrics"] == run["result"]["result"]["metrics"]
    error(
        await http.post(f"{API}/agents/{uuid.uuid4()}/backtest-jobs", json=body), 404, "not_found"
    )
