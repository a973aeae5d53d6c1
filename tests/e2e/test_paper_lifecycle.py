"""The order lifecycle on the real server, through HTTP only: place, cancel all, buy,
close the position, reset the account, and the portfolio after each step.

The market is the server's own simulated one, moving on its own: prices are read from
the responses, never assumed; a resting buy far below the market (1,000 USD for BTC)
stays open for the test's few seconds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

BASE = "/api/v1/trading/paper"
D = Decimal


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _balance(portfolio: dict[str, Any], asset: str) -> tuple[Decimal, Decimal]:
    for row in portfolio["balances"]:
        if row["asset"] == asset:
            return D(row["free"]), D(row["locked"])
    return D(0), D(0)


async def test_place_cancel_all_buy_close_and_reset(http: httpx.AsyncClient) -> None:
    start = _ok(await http.get(f"{BASE}/portfolio"))
    account_id = start["account"]["id"]
    initial = D(start["account"]["initial_balance"])
    scoped = {"account_id": account_id}

    resting = _ok(
        await http.post(
            f"{BASE}/order",
            json={
                "symbol": "BTC/USD",
                "side": "buy",
                "order_type": "limit",
                "price": "1000",
                "quantity": "0.01",
            },
        ),
        201,
    )
    assert resting["status"] == "pending", resting
    assert _balance(_ok(await http.get(f"{BASE}/portfolio")), "USD")[1] > 0

    cancelled = _ok(await http.delete(f"{BASE}/orders", params=scoped))
    assert cancelled["count"] == 1
    assert [(o["id"], o["status"]) for o in cancelled["items"]] == [(resting["id"], "cancelled")]
    assert _balance(_ok(await http.get(f"{BASE}/portfolio")), "USD")[1] == 0

    bought = _ok(
        await http.post(
            f"{BASE}/order", json={"symbol": "BTC-USD", "side": "buy", "quantity": "0.002"}
        ),
        201,
    )
    assert bought["status"] == "filled", bought
    held = _ok(await http.get(f"{BASE}/portfolio"))
    assert [p["quantity"] for p in held["positions"] if p["symbol"] == "BTC/USD"] == ["0.002"]

    closed = _ok(await http.delete(f"{BASE}/positions/BTC-USD", params=scoped))
    assert closed["symbol"] == "BTC/USD"
    assert closed["cancelled_orders"] == []
    sell = closed["order"]
    assert (sell["side"], sell["status"], sell["filled_quantity"]) == ("sell", "filled", "0.002")
    flat = _ok(await http.get(f"{BASE}/portfolio"))
    assert [p for p in flat["positions"] if p["symbol"] == "BTC/USD"] == []
    assert _balance(flat, "BTC") == (D(0), D(0))
    fills = _ok(await http.get(f"{BASE}/fills", params={**scoped, "limit": 500}))
    assert {f["order_id"] for f in fills["items"]} >= {bought["id"], sell["id"]}
    # Two fees paid and a round trip at the spread: the account is not where it began.
    assert D(flat["fees"]) > 0
    assert D(flat["cash"]) != initial

    reset = _ok(await http.post(f"{BASE}/accounts/{account_id}/reset"))
    assert reset["account"]["id"] == account_id
    assert reset["deleted_fills"] >= len({bought["id"], sell["id"]})
    fresh = _ok(await http.get(f"{BASE}/portfolio"))
    assert _balance(fresh, "USD") == (initial, D(0))
    assert _balance(fresh, "BTC") == (D(0), D(0))
    assert fresh["positions"] == []
    assert (D(fresh["cash"]), D(fresh["equity"])) == (initial, initial)
    assert (D(fresh["realized_pnl"]), D(fresh["fees"]), D(fresh["total_pnl"])) == (D(0), D(0), D(0))
    assert _ok(await http.get(f"{BASE}/fills", params=scoped))["items"] == []
    orders = _ok(await http.get(f"{BASE}/orders", params=scoped))
    assert (orders["items"], orders["next_cursor"]) == ([], None)
    metrics = _ok(await http.get(f"{BASE}/metrics", params=scoped))
    assert D(metrics["realized_pnl"]) == 0
