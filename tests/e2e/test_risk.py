"""Risk on the real server, through HTTP and /ws only: limits refusing orders, the kill
switch (cancel, flatten, nothing else trades), alerts pushed on `risk` and replayed,
VaR and stress tests of a held position, and agents stopped by limits and switches.

Each test trades on an account of its own (an agent's, see risk_helpers.py), so a
limit or a switch of one test never reaches another's orders. The market is the
server's own simulated one, moving on its own: every amount is derived from the live
ask or from a fill's price, and resting buys sit at half the market or lower.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from models.risk import AlertRead
from models.stress import BUILT_IN_SCENARIOS
from models.ws_protocol import RiskAlertEvent, parse_server_message
from tests.e2e.conftest import WAIT, subscriber
from tests.e2e.risk_helpers import (
    RISK,
    TRADING,
    add_limit,
    alerts,
    ask_price,
    balances,
    engage,
    error,
    fills,
    fresh_account,
    holdings,
    market_buy,
    new_agent,
    ok,
    orders,
    place,
    portfolio,
    release,
    resting_buy,
)
from tests.e2e.server import LiveServer

D = Decimal
CENT = D("0.01")
RATIO = D("0.000001")  # the quantum of a limit's utilisation


@pytest.fixture(scope="module")
def module_env() -> dict[str, str]:
    # Agents decide only when a test asks; the risk monitor runs as configured by default.
    return {"AGENT_SCHEDULER_ENABLED": "false"}


async def poll(
    read: Callable[[], Awaitable[dict[str, Any]]],
    done: Callable[[dict[str, Any]], bool],
    within: float = WAIT,
) -> dict[str, Any]:
    """Read until `done` holds, for at most `within` seconds (a deadline, not a sleep)."""
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not done within {within}s: {value}"
        await asyncio.sleep(0.1)


def risk_alert_of(
    *, limit_id: str | None = None, alert_id: str | None = None
) -> Callable[[dict[str, Any]], bool]:
    def match(frame: dict[str, Any]) -> bool:
        if frame.get("type") != "risk_alert" or frame.get("channel") != "risk":
            return False
        data = frame["data"]
        return (limit_id is None or data.get("limit_id") == limit_id) and (
            alert_id is None or data.get("id") == alert_id
        )

    return match


def trade(side: str, quantity: str, reasoning: str) -> dict[str, Any]:
    return {
        "reasoning": reasoning,
        "decision_type": "trade",
        "symbol": "BTC/USD",
        "side": side,
        "quantity": quantity,
        "order_type": "market",
        "confidence_score": "0.9",
    }


async def override(
    http: httpx.AsyncClient, agent_id: str, decision: dict[str, Any]
) -> dict[str, Any]:
    """The decision executed through the agent's cycle (risk checks, order, log)."""
    response = await http.post(
        f"/api/v1/agents/{agent_id}/execute-decision", json={"decision": decision}
    )
    read: dict[str, Any] = ok(response)
    return read


class TestLimitsOnOrders:
    async def test_an_order_that_would_breach_is_refused_with_the_numbers(
        self, http: httpx.AsyncClient
    ) -> None:
        account = await fresh_account(http)
        ask = await ask_price(http)
        position_cap = (ask * D("0.015")).quantize(CENT)
        order_cap = (ask * D("0.008")).quantize(CENT)
        by_position = await add_limit(
            http, account, "position_size", position_cap, symbol="BTC/USD"
        )
        by_order = await add_limit(http, account, "order_notional", order_cap)
        assert D(by_position["current_value"]) == 0, "measured at once: nothing held"

        # ~0.005 x ask: under both limits, so it fills.
        within = await market_buy(http, account, "0.005")
        before = await portfolio(http, account)
        fills_before = await fills(http, account)

        price, quantity = (ask / 2).quantize(CENT), D("0.025")
        refused = error(
            await place(
                http, account, side="buy", order_type="limit", price=str(price),
                quantity=str(quantity), client_order_id="e2e-risk-refused",
            ),
            422,
            "risk_limit_exceeded",
        )  # fmt: skip
        assert "would breach 2 risk limits" in refused["message"], refused
        notional = price * quantity
        details = refused["details"]
        assert D(details["order_notional"]) == notional
        named = {reading["limit_id"]: reading for reading in details["limits"]}
        assert set(named) == {by_position["id"], by_order["id"]}

        on_order = named[by_order["id"]]
        assert (on_order["limit_type"], on_order["symbol"]) == ("order_notional", None)
        assert D(on_order["limit_value"]) == order_cap
        assert D(on_order["current"]) == D(on_order["projected"]) == notional
        assert D(on_order["utilisation"]) == (notional / order_cap).quantize(RATIO)
        assert "over the limit" in on_order["reason"]

        on_position = named[by_position["id"]]
        assert (on_position["limit_type"], on_position["symbol"]) == ("position_size", "BTC/USD")
        held = D(on_position["current"])
        cost = D(within["average_price"]) * D("0.005")
        assert abs(held - cost) < cost * D("0.05"), "the holding at the mark"
        assert D(on_position["projected"]) == held + notional > position_cap
        assert D(on_position["utilisation"]) > 1
        assert "BTC/USD position" in on_position["reason"]

        after = await portfolio(http, account)
        assert balances(after) == balances(before), "the refused order locked nothing"
        assert holdings(after) == holdings(before) == {"BTC/USD": D("0.005")}
        assert await fills(http, account) == fills_before
        assert [o["id"] for o in await orders(http, account)] == [within["id"]]

    async def test_a_replacement_that_would_breach_leaves_the_order_as_it_was(
        self, http: httpx.AsyncClient
    ) -> None:
        account = await fresh_account(http)
        ask = await ask_price(http)
        price = (ask / 2).quantize(CENT)
        order_cap = (price * D("0.002")).quantize(CENT)
        limit = await add_limit(http, account, "order_notional", order_cap)
        small = await resting_buy(http, account, price=str(price), quantity="0.001")
        locked = balances(await portfolio(http, account))

        refused = error(
            await http.patch(f"{TRADING}/orders/{small['id']}", json={"quantity": "0.003"}),
            422,
            "risk_limit_exceeded",
        )
        assert [r["limit_id"] for r in refused["details"]["limits"]] == [limit["id"]]
        assert D(refused["details"]["order_notional"]) == price * D("0.003")
        kept = ok(await http.get(f"{TRADING}/orders/{small['id']}"))
        assert (kept["status"], kept["quantity"]) == ("pending", "0.001")
        assert balances(await portfolio(http, account)) == locked
        ok(await http.delete(f"{TRADING}/orders/{small['id']}"))

    async def test_the_monitor_keeps_a_limits_current_value_after_fills(
        self, http: httpx.AsyncClient
    ) -> None:
        account = await fresh_account(http)
        limit = await add_limit(http, account, "gross_exposure", "5000")
        assert D(limit["current_value"]) == 0
        bought = await market_buy(http, account, "0.01")
        seen = await poll(
            lambda: _limit(http, limit["id"]),
            lambda read: D(read["current_value"] or 0) > 0,
        )
        cost = D(bought["average_price"]) * D("0.01")
        assert abs(D(seen["current_value"]) - cost) < cost * D("0.05")


async def _limit(http: httpx.AsyncClient, limit_id: str) -> dict[str, Any]:
    read: dict[str, Any] = ok(await http.get(f"{RISK}/limits/{limit_id}"))
    return read


class TestKillSwitch:
    async def test_engaged_with_flatten_only_the_flattening_trades(
        self, http: httpx.AsyncClient
    ) -> None:
        account = await fresh_account(http)
        bought = await market_buy(http, account, "0.01")
        ask = await ask_price(http)
        resting = await resting_buy(
            http, account, price=str((ask / 4).quantize(CENT)), quantity="0.002"
        )

        switch = await engage(http, account, "e2e: stop everything", flatten=True)
        effects = switch["effects"]
        assert (switch["scope"], switch["account_id"], switch["flatten"]) == (
            "account",
            account,
            True,
        )
        assert switch["released_at"] is None
        assert effects["orders_cancelled"] == [resting["id"]]
        assert effects["flatten_skipped"] == []
        assert effects["agents_paused"] == [], "the account's agent was not running"
        [flattened] = effects["positions_flattened"]
        assert (flattened["symbol"], flattened["filled"]) == ("BTC/USD", "0.01")

        cancelled = ok(await http.get(f"{TRADING}/orders/{resting['id']}"))
        assert cancelled["status"] == "cancelled"
        assert cancelled["reject_reason"] == "cancelled by the kill switch (e2e: stop everything)"
        sold = ok(await http.get(f"{TRADING}/orders/{flattened['order_id']}"))
        assert (sold["side"], sold["order_type"], sold["status"]) == ("sell", "market", "filled")
        flat = await portfolio(http, account)
        assert holdings(flat) == {}
        assert balances(flat).get("BTC", (D(0), D(0))) == (D(0), D(0))
        assert balances(flat)["USD"][1] == 0, "nothing left locked"

        refusals = [
            await place(http, account, side="buy", quantity="0.001"),
            await place(http, account, side="buy", notional="50"),
            await place(http, account, side="sell", quantity="0.001"),
            await place(
                http, account, side="sell", order_type="limit",
                price=str((ask * 2).quantize(CENT)), quantity="0.001",
            ),
        ]  # fmt: skip
        for refused in refusals:
            body = error(refused, 409, "kill_switch_engaged")
            assert body["details"]["kill_switch_id"] == switch["id"]
            assert "e2e: stop everything" in body["message"]
        # The order it cancelled cannot come back by a replace.
        error(
            await http.patch(f"{TRADING}/orders/{resting['id']}", json={"price": "1000"}),
            409,
            "conflict",
        )

        traded = await fills(http, account)
        assert {f["order_id"] for f in traded} == {bought["id"], flattened["order_id"]}
        engaged_at = datetime.fromisoformat(switch["engaged_at"])
        after_switch = [f for f in traded if datetime.fromisoformat(f["executed_at"]) >= engaged_at]
        assert {f["order_id"] for f in after_switch} == {flattened["order_id"]}
        assert sum(D(f["quantity"]) for f in after_switch) == D("0.01")
        assert all(f["side"] == "sell" for f in after_switch)
        assert {o["id"] for o in await orders(http, account)} == {
            bought["id"],
            resting["id"],
            flattened["order_id"],
        }
        engaged = ok(await http.get(f"{RISK}/kill-switch", params={"engaged": "true"}))
        assert switch["id"] in {s["id"] for s in engaged["items"]}
        [raised] = await alerts(http, account_id=account, alert_type="kill_switch")
        assert (raised["severity"], raised["data"]["kill_switch_id"]) == ("critical", switch["id"])

        released = await release(http, switch["id"])
        assert released["released_at"] is not None
        error(await http.post(f"{RISK}/kill-switch/{switch['id']}/release"), 409, "conflict")
        again = await market_buy(http, account, "0.001")
        assert {f["order_id"] for f in await fills(http, account)} == {
            bought["id"],
            flattened["order_id"],
            again["id"],
        }

    async def test_without_flatten_exits_are_stopped_too(self, http: httpx.AsyncClient) -> None:
        account = await fresh_account(http)
        bought = await market_buy(http, account, "0.01")
        switch = await engage(http, account, "e2e: hold still", flatten=False)
        assert switch["effects"]["positions_flattened"] == []

        error(await place(http, account, side="sell", quantity="0.005"), 409, "kill_switch_engaged")
        error(
            await http.delete(f"{TRADING}/positions/BTC-USD", params={"account_id": account}),
            409,
            "kill_switch_engaged",
        )
        closed = ok(await http.delete(f"{TRADING}/positions", params={"account_id": account}))
        assert closed["items"] == []
        assert [s["symbol"] for s in closed["skipped"]] == ["BTC/USD"]
        assert holdings(await portfolio(http, account)) == {"BTC/USD": D("0.01")}
        assert [f["order_id"] for f in await fills(http, account)] == [bought["id"]]

        await release(http, switch["id"])
        sold = ok(await place(http, account, side="sell", quantity="0.01"), 201)
        assert sold["status"] == "filled", sold
        assert holdings(await portfolio(http, account)) == {}

    async def test_a_user_switch_stops_every_account_of_the_user(
        self, http: httpx.AsyncClient
    ) -> None:
        first, second = await fresh_account(http), await fresh_account(http)
        body = {"scope": "user", "reason": "e2e: all of mine"}
        switch = ok(await http.post(f"{RISK}/kill-switch", json=body), 201)
        try:
            assert (switch["scope"], switch["account_id"]) == ("user", None)
            assert switch["effects"]["accounts"] >= 2
            for account in (first, second):
                refused = error(
                    await place(http, account, side="buy", quantity="0.001"),
                    409,
                    "kill_switch_engaged",
                )
                assert refused["details"] == {"kill_switch_id": switch["id"], "scope": "user"}
            default = await http.post(
                f"{TRADING}/order", json={"symbol": "BTC/USD", "side": "buy", "quantity": "0.001"}
            )
            error(default, 409, "kill_switch_engaged")
        finally:
            await release(http, switch["id"])
        await market_buy(http, first, "0.001")


class TestAlerts:
    async def test_a_breach_is_pushed_listed_acknowledged_and_replayed(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        account = await fresh_account(http)
        bought = await market_buy(http, account, "0.01")
        cap = (D(bought["average_price"]) * D("0.01") / 2).quantize(CENT)
        async with subscriber(server, "risk") as sub:
            # Below the position already held: the account is over it as it is created.
            limit = await add_limit(http, account, "position_size", cap, symbol="BTC/USD")
            frame = await sub.until(risk_alert_of(limit_id=limit["id"]))
        assert D(limit["current_value"]) > cap

        # The published protocol's model (the Subscriber checks every frame with it too).
        event = parse_server_message(orjson.dumps(frame))
        assert isinstance(event, RiskAlertEvent)
        assert str(event.data.id) == frame["data"]["id"]
        pushed = frame["data"]
        assert set(pushed) == set(AlertRead.model_fields), "what GET /risk/alerts lists"
        AlertRead.model_validate(pushed)
        assert (pushed["alert_type"], pushed["severity"]) == ("limit_breached", "high")
        assert (pushed["account_id"], pushed["acknowledged"]) == (account, False)
        assert pushed["data"]["limit_type"] == "position_size"
        assert D(pushed["data"]["limit_value"]) == cap < D(pushed["data"]["current"])
        assert "position_size limit on BTC/USD" in pushed["message"]
        assert "over the limit" in pushed["message"]

        listed = await alerts(http, account_id=account, acknowledged="false")
        [stored] = [a for a in listed if a["id"] == pushed["id"]]
        # `data` holds the latest figures (the monitor refreshes a standing alert).
        assert {k: v for k, v in stored.items() if k != "data"} == {
            k: v for k, v in pushed.items() if k != "data"
        }
        by_type = await alerts(http, account_id=account, alert_type="limit_breached")
        assert [a["id"] for a in by_type] == [pushed["id"]]

        acked = ok(await http.post(f"{RISK}/alerts/acknowledge", json={"ids": [pushed["id"]]}))
        assert acked["count"] == 1
        assert acked["items"][0]["acknowledged"] is True
        assert acked["items"][0]["acknowledged_at"] is not None
        assert pushed["id"] in {a["id"] for a in await alerts(http, acknowledged="true")}
        still_open = await alerts(http, account_id=account, acknowledged="false")
        assert pushed["id"] not in {a["id"] for a in still_open}
        unknown = str(uuid.uuid4())
        error(
            await http.post(f"{RISK}/alerts/acknowledge", json={"ids": [unknown]}), 404, "not_found"
        )

        # A client that was away asks for what it missed after the seq before the alert.
        async with subscriber(server) as late:
            await late.subscribe("risk", since=frame["seq"] - 1)
            replayed = await late.until(risk_alert_of(alert_id=pushed["id"]))
        assert replayed == frame

    async def test_a_fill_near_a_limit_raises_the_approach_warning(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        account = await fresh_account(http)
        ask = await ask_price(http)
        # A 0.01 BTC position uses ~90% of it: past RISK_APPROACH_PCT (80), within the limit.
        cap = (ask * D("0.01") / D("0.9")).quantize(CENT)
        limit = await add_limit(http, account, "gross_exposure", cap)
        async with subscriber(server, "risk") as sub:
            await market_buy(http, account, "0.01")
            # Raised by the monitor's round after the fill (RISK_AFTER_FILL_DELAY_SECONDS).
            frame = await sub.until(risk_alert_of(limit_id=limit["id"]))
        warning = frame["data"]
        assert (warning["alert_type"], warning["severity"]) == ("limit_approached", "medium")
        assert D("0.8") <= D(warning["data"]["utilisation"]) <= 1
        assert "within the limit" in warning["message"]
        measured = await _limit(http, limit["id"])
        assert D(measured["current_value"]) > 0


class TestMetricsAndStress:
    async def test_fresh_var_and_es_of_a_held_position(self, http: httpx.AsyncClient) -> None:
        account = await fresh_account(http)
        await market_buy(http, account, "0.01")
        metrics = ok(
            await http.get(f"{RISK}/metrics", params={"account_id": account, "fresh": "true"})
        )
        assert metrics["account_id"] == account
        assert metrics["currency"] == "USD"
        assert metrics["history_days"] > 0
        assert metrics["periods_per_year"] == 365, "crypto trades every day"
        risks = metrics["position_risks"]
        assert [(p["symbol"], p["quantity"]) for p in risks] == [("BTC/USD", "0.01")]
        assert D(metrics["gross_exposure"]) == D(metrics["net_exposure"]) > 0
        horizon = metrics["horizon_days"]
        for method in ("historical", "parametric"):
            at_95, at_99 = metrics["tail"][f"{method}_95"], metrics["tail"][f"{method}_99"]
            for span in ("one_day", "horizon"):
                var_95, var_99 = D(at_95[span]["var"]), D(at_99[span]["var"])
                assert 0 < var_95 <= var_99, (method, span)
                assert D(at_95[span]["es"]) >= var_95, "the mean loss beyond the VaR"
                assert D(at_99[span]["es"]) >= var_99
            one_day = float(at_95["one_day"]["var"])
            assert float(at_95["horizon"]["var"]) == pytest.approx(
                one_day * math.sqrt(horizon), rel=1e-6
            )
        assert D(risks[0]["standalone_var"]) > 0

    async def test_every_built_in_scenario_loses_and_the_crash_names_a_limit(
        self, http: httpx.AsyncClient
    ) -> None:
        account = await fresh_account(http)
        bought = await market_buy(http, account, "0.01")
        # A 30% crash loses ~0.3 of the position: past this; fees and spread stay far below.
        loss_cap = (D(bought["average_price"]) * D("0.01") * D("0.2")).quantize(CENT)
        limit = await add_limit(http, account, "daily_loss", loss_cap)
        assert D(limit["current_value"]) < loss_cap

        stressed = ok(await http.post(f"{RISK}/stress-test", json={"account_id": account}))
        assert stressed["account_id"] == account
        results = stressed["results"]
        assert [r["name"] for r in results] == [s.value for s in BUILT_IN_SCENARIOS]
        for result in results:
            [position] = result["positions"]
            assert (position["symbol"], position["quantity"]) == ("BTC/USD", "0.01")
            assert D(position["shock"]) < 0, result
            assert D(result["pnl"]) == D(position["pnl"]) < 0, result
            assert D(result["equity_after"]) == D(result["equity_before"]) + D(result["pnl"])

        crash = results[0]
        assert crash["name"] == "crypto_crash"
        assert D(crash["positions"][0]["shock"]) == D("-0.3")
        [breach] = [b for b in crash["breaches"] if b["limit_id"] == limit["id"]]
        assert (breach["limit_type"], breach["already_breached"]) == ("daily_loss", False)
        assert D(breach["measure_after"]) >= loss_cap
        assert "has reached the limit" in breach["reason"]


class TestAgents:
    async def test_an_agents_order_over_a_limit_is_refused_and_logged(
        self, http: httpx.AsyncClient
    ) -> None:
        agent = await new_agent(http)
        account = agent["account_id"]
        ask = await ask_price(http)
        # Between a 0.0002 BTC order and a 0.001 BTC one (the agent's own 10% cap of
        # its 10,000 USD lets both through: the user's limit is what refuses).
        cap = (ask * D("0.0005")).quantize(CENT)
        limit = await add_limit(http, account, "order_notional", cap)

        # A given decision, so the order is known; it runs the cycle's own risk
        # checks, execution and log (the local model decides on the market's moves).
        refused = await override(http, agent["id"], trade("buy", "0.001", "e2e: too big"))
        assert (refused["status"], refused["action_taken"]) == ("rejected", "none"), refused
        assert refused["result"]["order_error"]["code"] == "risk_limit_exceeded"
        reason = refused["status_reason"]
        assert "order_notional" in reason
        assert "over the limit" in reason
        log = ok(await http.get(f"/api/v1/agents/{agent['id']}/decisions"))
        [logged] = [d for d in log["items"] if d["id"] == refused["id"]]
        assert logged["status_reason"] == reason
        assert await orders(http, account) == []

        passed = await override(http, agent["id"], trade("buy", "0.0002", "e2e: small"))
        assert (passed["status"], passed["action_taken"]) == ("executed", "buy"), passed
        assert holdings(await portfolio(http, account)) == {"BTC/USD": D("0.0002")}
        assert [o["id"] for o in await orders(http, account)] == [passed["result"]["order"]["id"]]
        assert D(limit["limit_value"]) == cap

    async def test_a_kill_switch_pauses_the_agent_and_refuses_its_orders(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        agent = await new_agent(http)
        account = agent["account_id"]
        ok(await http.post(f"/api/v1/agents/{agent['id']}/start"))
        mine = lambda f: f.get("type") == "agent_status" and f["data"]["agent_id"] == agent["id"]  # noqa: E731
        async with subscriber(server, "agents") as sub:
            switch = await engage(http, account, "e2e: agent halted", flatten=False)
            status = await sub.until(mine)
        assert switch["effects"]["agents_paused"] == [agent["id"]]
        assert status["data"] == {
            "agent_id": agent["id"],
            "status": "paused",
            "previous_status": "active",
            "reason": "kill switch: e2e: agent halted",
        }
        paused = ok(await http.get(f"/api/v1/agents/{agent['id']}"))
        assert (paused["status"], paused["status_reason"]) == (
            "paused",
            "kill switch: e2e: agent halted",
        )

        decided = await override(http, agent["id"], trade("buy", "0.0002", "e2e: try anyway"))
        assert decided["status"] == "rejected", decided
        assert decided["result"]["order_error"]["code"] == "kill_switch_engaged"
        assert "e2e: agent halted" in decided["status_reason"]
        assert await orders(http, account) == []

        await release(http, switch["id"])
        still = ok(await http.get(f"/api/v1/agents/{agent['id']}"))
        assert still["status"] == "paused", "a release does not restart agents"
        assert ok(await http.post(f"/api/v1/agents/{agent['id']}/start"))["status"] == "active"
        ok(await http.post(f"/api/v1/agents/{agent['id']}/stop"))

    async def test_a_kill_on_breach_limit_engages_the_switch_itself(
        self, http: httpx.AsyncClient
    ) -> None:
        agent = await new_agent(http)
        account = agent["account_id"]
        ok(await http.post(f"/api/v1/agents/{agent['id']}/start"))
        limit = await add_limit(
            http, account, "position_size", "5000", symbol="BTC/USD", kill_on_breach=True
        )
        bought = await market_buy(http, account, "0.01")
        # The monitor's round after the fill measured it: that round is over, so the
        # change below is the one thing that finds the breach.
        await poll(lambda: _limit(http, limit["id"]), lambda r: D(r["current_value"]) > 0)
        cap = (D(bought["average_price"]) * D("0.01") / 2).quantize(CENT)
        ok(await http.patch(f"{RISK}/limits/{limit['id']}", json={"limit_value": str(cap)}))

        engaged = ok(await http.get(f"{RISK}/kill-switch", params={"engaged": "true"}))
        [switch] = [s for s in engaged["items"] if s["account_id"] == account]
        assert switch["engaged_by"] is None, "engaged by the risk monitor"
        assert switch["reason"].startswith("limit breached: position_size: ")
        assert switch["flatten"] is False, "RISK_KILL_SWITCH_FLATTEN is off by default"
        assert switch["effects"]["agents_paused"] == [agent["id"]]
        paused = ok(await http.get(f"/api/v1/agents/{agent['id']}"))
        assert (paused["status"], paused["status_reason"]) == (
            "paused",
            f"kill switch: {switch['reason']}",
        )
        [breached] = await alerts(http, account_id=account, alert_type="limit_breached")
        assert (breached["severity"], breached["limit_id"]) == ("critical", limit["id"])
        error(await place(http, account, side="buy", quantity="0.001"), 409, "kill_switch_engaged")
        assert holdings(await portfolio(http, account)) == {"BTC/USD": D("0.01")}
        # Still breached, the limit would engage a new switch at the next round: it goes first.
        ok(await http.delete(f"{RISK}/limits/{limit['id']}"), 204)
        await release(http, switch["id"])
