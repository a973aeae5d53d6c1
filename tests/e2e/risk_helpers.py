"""What tests/e2e/test_risk.py does over HTTP, in one place: a fresh account, orders on
it, limits, the kill switch, and reading back what the account holds and traded.

Every test works on an account of its own (an agent's, created for it): the server is
shared by the module, and a limit or a kill switch on one account leaves the others
alone. Prices are read from the live market, never assumed.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx

TRADING = "/api/v1/trading/paper"
RISK = "/api/v1/risk"
D = Decimal


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error body of a refusal with this status and code."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


async def new_agent(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """An agent on the built-in local provider, inactive, with its own paper account."""
    body = {
        "name": f"e2e-risk-{uuid.uuid4().hex[:8]}",
        "symbols": ["BTC/USD"],
        "llm_provider": "local",
        **fields,
    }
    agent: dict[str, Any] = ok(await http.post("/api/v1/agents", json=body), 201)
    return agent


async def fresh_account(http: httpx.AsyncClient) -> str:
    """A new account (10,000 USD) no other test touches."""
    return str((await new_agent(http))["account_id"])


async def ask_price(http: httpx.AsyncClient, symbol: str = "BTC-USD") -> Decimal:
    live = ok(await http.get(f"/api/v1/market/live-data/{symbol}"))
    return D(live["ask"])


async def place(http: httpx.AsyncClient, account_id: str, **order: Any) -> httpx.Response:
    body = {"symbol": "BTC/USD", "account_id": account_id, **order}
    return await http.post(f"{TRADING}/order", json=body)


async def market_buy(http: httpx.AsyncClient, account_id: str, quantity: str) -> dict[str, Any]:
    order: dict[str, Any] = ok(await place(http, account_id, side="buy", quantity=quantity), 201)
    assert order["status"] == "filled", order
    return order


async def resting_buy(
    http: httpx.AsyncClient, account_id: str, *, price: str, quantity: str
) -> dict[str, Any]:
    """A limit buy far below the market: it rests for the test's few seconds."""
    order: dict[str, Any] = ok(
        await place(
            http, account_id, side="buy", order_type="limit", price=price, quantity=quantity
        ),
        201,
    )
    assert order["status"] == "pending", order
    return order


async def add_limit(
    http: httpx.AsyncClient, account_id: str, limit_type: str, value: Decimal | str, **extra: Any
) -> dict[str, Any]:
    body = {
        "limit_type": limit_type,
        "limit_value": str(value),
        "account_id": account_id,
        **extra,
    }
    limit: dict[str, Any] = ok(await http.post(f"{RISK}/limits", json=body), 201)
    return limit


async def engage(
    http: httpx.AsyncClient, account_id: str, reason: str, *, flatten: bool
) -> dict[str, Any]:
    body = {"scope": "account", "account_id": account_id, "reason": reason, "flatten": flatten}
    switch: dict[str, Any] = ok(await http.post(f"{RISK}/kill-switch", json=body), 201)
    return switch


async def release(http: httpx.AsyncClient, switch_id: str) -> dict[str, Any]:
    released: dict[str, Any] = ok(await http.post(f"{RISK}/kill-switch/{switch_id}/release"))
    return released


async def portfolio(http: httpx.AsyncClient, account_id: str) -> dict[str, Any]:
    read: dict[str, Any] = ok(
        await http.get(f"{TRADING}/portfolio", params={"account_id": account_id})
    )
    return read


def balances(read: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    """asset -> (free, locked)."""
    return {row["asset"]: (D(row["free"]), D(row["locked"])) for row in read["balances"]}


def holdings(read: dict[str, Any]) -> dict[str, Decimal]:
    """symbol -> quantity of every open position."""
    return {p["symbol"]: D(p["quantity"]) for p in read["positions"] if D(p["quantity"]) > 0}


async def fills(http: httpx.AsyncClient, account_id: str) -> list[dict[str, Any]]:
    """Every fill of the account (a test's account has far fewer than a page)."""
    page = ok(await http.get(f"{TRADING}/fills", params={"account_id": account_id, "limit": 500}))
    assert page["next_cursor"] is None, "more fills than one page: the test expected a few"
    items: list[dict[str, Any]] = page["items"]
    return items


async def orders(http: httpx.AsyncClient, account_id: str) -> list[dict[str, Any]]:
    page = ok(await http.get(f"{TRADING}/orders", params={"account_id": account_id, "limit": 500}))
    assert page["next_cursor"] is None, "more orders than one page: the test expected a few"
    items: list[dict[str, Any]] = page["items"]
    return items


async def alerts(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    page = ok(await http.get(f"{RISK}/alerts", params={"limit": 500, **params}))
    items: list[dict[str, Any]] = page["items"]
    return items
