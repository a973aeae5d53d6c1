"""Candle import on the real server, through HTTP only: a CSV streamed chunked is stored
whole and read back with GET, a re-import overwrites, a bad file is a 422 naming each bad
line and leaves nothing behind, an oversized body is a 413, an unknown timeframe a 422."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.risk_helpers import error, ok

IMPORT = "/api/v1/market/candles/import"
IMPORTED = "/api/v1/market/candles/imported"
MAX_BYTES = 200_000
T0 = datetime(2024, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HEADER = "timestamp,open,high,low,close,volume,trades_count\r\n"


@pytest.fixture(scope="module")
def module_env() -> dict[str, str]:
    return {"MARKET_DATA_IMPORT_MAX_BYTES": str(MAX_BYTES)}


def new_symbol() -> str:
    return f"E2E{uuid.uuid4().hex[:6].upper()}-USDT"


def lines(count: int, *, start: int = 0, close: str = "100.5") -> Iterable[str]:
    for i in range(start, start + count):
        millis = int((T0 + i * MINUTE).timestamp()) * 1000
        yield f"{millis},100,101.25,99.75,{close},{i}.5,{i}\r\n"


async def chunked(rows: Iterable[str], *, header: str = HEADER) -> AsyncIterator[bytes]:
    """The file a few rows a chunk, generated as it is sent (no Content-Length)."""
    yield ("\ufeff" + header).encode()
    batch: list[str] = []
    for row in rows:
        batch.append(row)
        if len(batch) == 50:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


async def upload(
    http: httpx.AsyncClient, symbol: str, content: AsyncIterator[bytes] | bytes, tf: str = "1m"
) -> httpx.Response:
    return await http.post(
        IMPORT,
        params={"symbol": symbol, "timeframe": tf},
        content=content,
        headers={"Content-Type": "text/csv"},
    )


async def read_all(http: httpx.AsyncClient, symbol: str) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    start = T0
    while True:
        page = ok(
            await http.get(
                f"{IMPORTED}/{symbol}",
                params={"timeframe": "1m", "start": start.isoformat(), "limit": 1000},
            )
        )
        items += page["items"]
        if len(page["items"]) < 1000:
            return items
        start = datetime.fromisoformat(page["items"][-1]["open_time"]) + MINUTE


async def test_a_streamed_file_is_stored_whole_and_a_reimport_overwrites(
    http: httpx.AsyncClient,
) -> None:
    symbol = new_symbol()
    imported = ok(await upload(http, symbol, chunked(lines(2500))), 201)
    expected_symbol = symbol.replace("-", "/")
    assert imported["symbol"] == expected_symbol
    assert (imported["timeframe"], imported["exchange"], imported["rows"]) == (
        "1m",
        "imported",
        2500,
    )
    assert datetime.fromisoformat(imported["first_open_time"]) == T0
    assert datetime.fromisoformat(imported["last_open_time"]) == T0 + 2499 * MINUTE
    stored = await read_all(http, symbol)
    assert len(stored) == 2500
    assert stored[7] == {
        "open_time": (T0 + 7 * MINUTE).isoformat().replace("+00:00", "Z"),
        "open": "100",
        "high": "101.25",
        "low": "99.75",
        "close": "100.5",
        "volume": "7.5",
        "trades": 7,
    }

    ok(await upload(http, symbol, chunked(lines(10, start=5, close="101"))), 201)
    closes = [c["close"] for c in await read_all(http, symbol)]
    assert closes[:16] == ["100.5"] * 5 + ["101"] * 10 + ["100.5"]
    assert len(closes) == 2500


async def test_a_bad_file_names_its_lines_and_stores_nothing(http: httpx.AsyncClient) -> None:
    symbol = new_symbol()
    rows = list(lines(300))
    rows[100] = rows[100].replace(",99.75,", ",100.75,")  # low above the open: line 102
    rows[200] = rows[200].replace(",100,", ",abc,", 1)  # line 202
    rows.append(rows[0])  # line 302 repeats line 2's open time
    refused = error(await upload(http, symbol, chunked(rows)), 422, "invalid_csv")
    assert refused["details"]["errors"] == [
        {"line": 102, "column": "low", "reason": "100.75 is above the open or the close"},
        {"line": 202, "column": "open", "reason": "'abc' is not a number"},
        {"line": 302, "column": "open_time", "reason": "the same open time as line 2"},
    ]
    assert (refused["details"]["error_count"], refused["details"]["bad_rows"]) == (3, 3)
    error(await http.get(f"{IMPORTED}/{symbol}", params={"timeframe": "1m"}), 404, "not_found")


async def test_a_body_over_the_limit_is_a_413(http: httpx.AsyncClient) -> None:
    symbol = new_symbol()
    big = list(lines(MAX_BYTES // 30))
    streamed = error(await upload(http, symbol, chunked(big)), 413, "payload_too_large")
    assert streamed["details"] == {"max_bytes": MAX_BYTES}
    whole = (HEADER + "".join(big)).encode()
    error(await upload(http, symbol, whole), 413, "payload_too_large")
    error(await http.get(f"{IMPORTED}/{symbol}", params={"timeframe": "1m"}), 404, "not_found")


async def test_an_unknown_timeframe_is_a_422(http: httpx.AsyncClient) -> None:
    refused = error(
        await upload(http, new_symbol(), chunked(lines(3)), tf="3m"), 422, "validation_failed"
    )
    assert [e["field"] for e in refused["details"]["errors"]] == ["query.timeframe"]


def waves(count: int) -> Iterable[str]:
    """A price that swings (a 60-minute sine around 100), so a crossover trades on it."""
    for i in range(count):
        millis = int((T0 + i * MINUTE).timestamp()) * 1000
        close = 100 + 5 * math.sin(2 * math.pi * i / 60)
        opened = 100 + 5 * math.sin(2 * math.pi * (i - 1) / 60)
        high, low = max(opened, close) + 0.25, min(opened, close) - 0.25
        yield f"{millis},{opened:.4f},{high:.4f},{low:.4f},{close:.4f},10,{i}\r\n"


async def test_a_strategy_backtests_on_an_imported_series(http: httpx.AsyncClient) -> None:
    symbol = new_symbol()  # a pair the simulated market does not trade
    ok(await upload(http, symbol, chunked(waves(600))), 201)
    strategy = ok(
        await http.post(
            "/api/v1/strategies",
            json={
                "name": f"e2e-imported-{uuid.uuid4().hex[:8]}",
                "strategy_type": "trend_following",
                "parameters": {"fast_window": 5, "slow_window": 20},
            },
        ),
        201,
    )
    body = {
        "symbol": symbol,
        "timeframe": "1m",
        "start": T0.isoformat(),
        "end": (T0 + 600 * MINUTE).isoformat(),
        "source": "imported",
    }

    run = ok(await http.post(f"/api/v1/strategies/{strategy['id']}/backtest", json=body))

    assert (run["symbol"], run["source"], run["candles"]) == (
        symbol.replace("-", "/"),
        "imported",
        600,
    )
    assert run["first_open"] == T0.isoformat().replace("+00:00", "Z")
    assert run["trades"], "a 5/20 crossover trades on a 60-minute wave"
    assert run["config"]["fee_bps"] == "20"  # no pair rules: the default fee
    assert run["config"]["quantity_step"] == "0.00000001"
    market = error(
        await http.post(
            f"/api/v1/strategies/{strategy['id']}/backtest", json={**body, "source": "market"}
        ),
        404,
        "not_found",
    )
    assert "unknown symbol" in market["message"]
    never = error(
        await http.post(
            f"/api/v1/strategies/{strategy['id']}/backtest", json={**body, "symbol": new_symbol()}
        ),
        422,
        "validation_failed",
    )
    assert "no closed" in never["message"]
