"""Order types on the real server, through HTTP only: a notional buy, post-only limits,
DAY and GTD expiry, replacing an open order (PATCH), and the 4xx a client gets for an
order that cannot be.

The market is the server's own simulated one, moving on its own: prices are read from
the responses and the book, never assumed; resting orders sit far from the market."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

BASE = "/api/v1/trading/paper"
D = Decimal


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


async def _place(http: httpx.AsyncClient, **order: Any) -> httpx.Response:
    return await http.post(f"{BASE}/order", json={"symbol": "BTC/USD", **order})


async def test_a_notional_buy_spends_at_most_its_amount(http: httpx.AsyncClient) -> None:
    placed = _ok(await _place(http, side="buy", notional="250"), 201)
    assert placed["notional"] == "250"
    assert placed["status"] in {"filled", "cancelled"}, placed
    assert D(placed["filled_quantity"]) > 0
    cost = sum(D(f["price"]) * D(f["quantity"]) + D(f["fee"]) for f in placed["fills"])
    assert cost <= D(250)
    assert D(placed["fees"]) > 0  # BTC/USD's own schedule: 20 bps taker


async def test_post_only_never_takes(http: httpx.AsyncClient) -> None:
    live = _ok(await http.get("/api/v1/market/live-data/BTC-USD", params={"depth": 5}))
    assert live["book"]["asks"], live
    crossing = D(live["book"]["asks"][0]["price"]) * 2  # far through the ask
    rejected = _ok(
        await _place(
            http, side="buy", order_type="limit", price=str(crossing.quantize(D("0.01"))),
            quantity="0.001", post_only=True,
        ),
        201,
    )  # fmt: skip
    assert rejected["status"] == "rejected", rejected
    assert "post-only" in rejected["reject_reason"]
    assert rejected["fills"] == []
    resting = _ok(
        await _place(
            http, side="buy", order_type="limit", price="1000", quantity="0.01", post_only=True
        ),
        201,
    )
    assert (resting["status"], resting["post_only"]) == ("pending", True)
    _ok(await http.delete(f"{BASE}/orders/{resting['id']}"))


async def test_day_and_gtd_orders_carry_their_expiry(http: httpx.AsyncClient) -> None:
    day = _ok(
        await _place(
            http, side="buy", order_type="limit", price="1000", quantity="0.01",
            time_in_force="DAY",
        ),
        201,
    )  # fmt: skip
    created = datetime.fromisoformat(day["created_at"])
    midnight = datetime.combine(created.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert datetime.fromisoformat(day["expires_at"]) == midnight
    expiry = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    gtd = _ok(
        await _place(
            http, side="buy", order_type="limit", price="1000", quantity="0.01",
            time_in_force="GTD", expires_at=expiry.isoformat(),
        ),
        201,
    )  # fmt: skip
    assert datetime.fromisoformat(gtd["expires_at"]) == expiry
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    message = _error(
        await _place(
            http, side="buy", order_type="limit", price="1000", quantity="0.01",
            time_in_force="GTD", expires_at=past,
        ),
        422,
        "validation_failed",
    )  # fmt: skip
    assert "not in the future" in message
    for order in (day, gtd):
        _ok(await http.delete(f"{BASE}/orders/{order['id']}"))


async def test_replacing_an_open_order(http: httpx.AsyncClient) -> None:
    old = _ok(
        await _place(http, side="buy", order_type="limit", price="1000", quantity="0.01"), 201
    )
    new = _ok(
        await http.patch(f"{BASE}/orders/{old['id']}", json={"price": "1100", "quantity": "0.02"})
    )
    assert new["replaces_order_id"] == old["id"]
    assert (new["price"], new["quantity"], new["status"]) == ("1100", "0.02", "pending")
    retired = _ok(await http.get(f"{BASE}/orders/{old['id']}"))
    assert retired["status"] == "cancelled"
    assert retired["reject_reason"] == f"replaced by order {new['id']}"
    _error(await http.patch(f"{BASE}/orders/{old['id']}", json={"price": "900"}), 409, "conflict")
    _error(await http.patch(f"{BASE}/orders/{new['id']}", json={}), 422, "validation_failed")
    _error(
        await http.patch(f"{BASE}/orders/{new['id']}", json={"stop_price": "900"}),
        422,
        "validation_failed",
    )
    _ok(await http.delete(f"{BASE}/orders/{new['id']}"))


async def test_orders_that_cannot_be_are_422s(http: httpx.AsyncClient) -> None:
    both = await _place(http, side="buy", quantity="0.01", notional="100")
    assert "either a quantity or a notional" in _error(both, 422, "validation_failed")
    limit = await _place(http, side="buy", order_type="limit", price="1000", notional="100")
    assert "only a market order takes a notional" in _error(limit, 422, "validation_failed")
    ioc = await _place(
        http, side="buy", order_type="limit", price="1000", quantity="0.01",
        time_in_force="IOC", post_only=True,
    )  # fmt: skip
    assert "post-only" in _error(ioc, 422, "validation_failed")
    trigger = await _place(http, side="buy", quantity="0.01", stop_trigger="bid")
    assert "takes no stop_trigger" in _error(trigger, 422, "validation_failed")
