from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.config import Settings
from main_consolidated import create_app
from tests.api.conftest import running_app

BASE = "/api/v1/market"


@pytest.fixture
def app_settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
    )


@pytest.fixture
async def client(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(app_settings)) as c:
        yield c


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body


class TestLiveData:
    @pytest.mark.parametrize("symbol", ["BTC-USD", "btc-usd", "BTC%2FUSD", "BTC/USD"])
    async def test_returns_the_ticker_for_every_symbol_form(
        self, client: httpx.AsyncClient, symbol: str
    ) -> None:
        response = await client.get(f"{BASE}/live-data/{symbol}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["symbol"] == "BTC/USD"
        assert Decimal(body["bid"]) < Decimal(body["ask"])
        assert Decimal(body["spread"]) == Decimal(body["ask"]) - Decimal(body["bid"])
        for field in ("last", "volume_24h", "change_24h", "change_percent_24h"):
            assert isinstance(body[field], str)
        assert body["book"] is None

    async def test_depth_adds_the_top_of_the_book(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{BASE}/live-data/ETH-USD", params={"depth": 3})
        book = response.json()["book"]
        assert len(book["bids"]) == len(book["asks"]) == 3
        assert Decimal(book["bids"][0]["price"]) < Decimal(book["asks"][0]["price"])

    async def test_bad_depth_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{BASE}/live-data/ETH-USD", params={"depth": 0})
        _assert_error(response, 422, "validation_failed")

    async def test_unknown_symbol_is_404_with_the_reason(self, client: httpx.AsyncClient) -> None:
        body = _assert_error(await client.get(f"{BASE}/live-data/FOO-USD"), 404, "not_found")
        assert "FOO-USD" in body["error"]["message"]
        assert body["error"]["details"] == {"symbol": "FOO-USD"}


class TestHistorical:
    async def test_returns_candles_oldest_first(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            f"{BASE}/historical/btc-usd", params={"timeframe": "1h", "limit": 5}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["symbol"], body["timeframe"]) == ("BTC/USD", "1h")
        times = [c["open_time"] for c in body["items"]]
        assert len(times) == 5
        assert times == sorted(times)
        for candle in body["items"]:
            low, high = Decimal(candle["low"]), Decimal(candle["high"])
            assert low <= Decimal(candle["open"]) <= high
            assert low <= Decimal(candle["close"]) <= high

    async def test_start_and_end_select_a_window(self, client: httpx.AsyncClient) -> None:
        params = {
            "timeframe": "1d",
            "start": "2024-01-01T00:00:00Z",
            "end": "2024-01-05T00:00:00Z",
        }
        response = await client.get(f"{BASE}/historical/SPY-USD", params=params)
        times = [c["open_time"] for c in response.json()["items"]]
        assert times == [f"2024-01-0{d}T00:00:00Z" for d in range(1, 6)]

    @pytest.mark.parametrize(
        "params",
        [
            {"timeframe": "3m"},
            {"limit": 0},
            {"limit": 1001},
            {"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
            {"start": "yesterday"},
        ],
    )
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, params: dict[str, str]
    ) -> None:
        response = await client.get(f"{BASE}/historical/BTC-USD", params=params)
        _assert_error(response, 422, "validation_failed")

    async def test_unknown_symbol_is_404(self, client: httpx.AsyncClient) -> None:
        _assert_error(await client.get(f"{BASE}/historical/FOO-USD"), 404, "not_found")


class TestPairs:
    async def test_lists_pairs_with_rules(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{BASE}/pairs")
        body = response.json()
        assert body["exchange"] == "simulated"
        pairs = {p["symbol"]: p for p in body["items"]}
        assert len(pairs) == 12
        btc = pairs["BTC/USD"]
        assert (btc["tick_size"], btc["step_size"], btc["min_notional"]) == (
            "0.01",
            "0.00001",
            "10",
        )
        assert pairs["AAPL/USD"]["asset_class"] == "equity"


class TestWatchlist:
    async def test_add_list_remove(self, client: httpx.AsyncClient) -> None:
        assert (await client.get(f"{BASE}/watchlist")).json() == {"items": []}
        added = await client.post(f"{BASE}/watchlist", json={"symbol": "eth-usd"})
        assert added.status_code == 201, added.text
        assert added.json()["symbol"] == "ETH/USD"
        await client.post(f"{BASE}/watchlist", json={"symbol": "BTC/USD"})
        items = (await client.get(f"{BASE}/watchlist")).json()["items"]
        assert [i["symbol"] for i in items] == ["ETH/USD", "BTC/USD"]
        assert Decimal(items[0]["ticker"]["last"]) > 0
        removed = await client.delete(f"{BASE}/watchlist/ETH-USD")
        assert removed.status_code == 204
        items = (await client.get(f"{BASE}/watchlist")).json()["items"]
        assert [i["symbol"] for i in items] == ["BTC/USD"]

    async def test_duplicate_add_is_409(self, client: httpx.AsyncClient) -> None:
        await client.post(f"{BASE}/watchlist", json={"symbol": "SOL-USD"})
        response = await client.post(f"{BASE}/watchlist", json={"symbol": "SOL/USD"})
        body = _assert_error(response, 409, "conflict")
        assert body["error"]["details"] == {"symbol": "SOL/USD"}

    async def test_unknown_symbol_cannot_be_added(self, client: httpx.AsyncClient) -> None:
        response = await client.post(f"{BASE}/watchlist", json={"symbol": "FOO-USD"})
        _assert_error(response, 404, "not_found")

    async def test_unknown_field_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post(f"{BASE}/watchlist", json={"symbol": "BTC", "x": 1})
        _assert_error(response, 422, "validation_failed")

    async def test_removing_a_symbol_not_watched_is_404(self, client: httpx.AsyncClient) -> None:
        _assert_error(await client.delete(f"{BASE}/watchlist/BTC-USD"), 404, "not_found")


class TestSubscribe:
    async def test_returns_the_channel(self, client: httpx.AsyncClient) -> None:
        response = await client.post(f"{BASE}/subscribe/btc-usd")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "symbol": "BTC/USD",
            "channel": "market:BTC/USD",
            "event_type": "market_data",
        }

    async def test_unknown_symbol_is_404(self, client: httpx.AsyncClient) -> None:
        _assert_error(await client.post(f"{BASE}/subscribe/FOO-USD"), 404, "not_found")


class TestOpenAPI:
    async def test_documents_the_symbol_forms(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()
        operation = schema["paths"]["/api/v1/market/live-data/{symbol}"]["get"]
        (parameter,) = [p for p in operation["parameters"] if p["name"] == "symbol"]
        assert "BTC-USD" in parameter["description"]
        assert "BTC%2FUSD" in parameter["description"]
