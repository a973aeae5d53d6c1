"""CandleImportService on the real services of each database: a file is written whole
or not at all, a re-import overwrites, the simulated market's series is never touched,
and the imported series reads back in [start, end) past one page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.config import Settings
from core.exceptions import AppError, NotFoundError, ValidationFailedError
from services.container import Services
from services.files.service import IMPORTED_EXCHANGE
from services.market_data.history import MAX_CANDLES
from tests.services.quiet import quiet_settings, started_at

D = Decimal
CLOCK = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HEADER = "open_time,open,high,low,close,volume,quote_volume,trades_count\n"
MINUTE = timedelta(minutes=1)
FAR = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    settings = quiet_settings(make_settings, database_url)
    async with started_at(settings, CLOCK) as built:
        yield built


def rows(count: int, *, start: datetime = T0, close: str = "101") -> list[str]:
    return [
        f"{(start + i * MINUTE).isoformat()},100,{max(D(close), D(102))},99,{close},1.5,150,{i}\n"
        for i in range(count)
    ]


async def body(lines: Iterable[str], chunk: int = 4096) -> AsyncIterator[bytes]:
    data = (HEADER + "".join(lines)).encode()
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def all_imported(services: Services, symbol: str = "BTC/USDT") -> list[Decimal]:
    candles = await services.candle_imports.imported_candles(
        symbol, timeframe="1m", start=T0 - timedelta(days=1), end=FAR
    )
    return [c.close for c in candles]


class TestImportCsv:
    async def test_a_good_file_writes_every_candle(self, services: Services) -> None:
        result = await services.candle_imports.import_csv(
            "btc-usdt", timeframe="1m", body=body(rows(3))
        )
        assert (result.symbol, result.exchange, result.rows) == ("BTC/USDT", IMPORTED_EXCHANGE, 3)
        assert (result.first_open_time, result.last_open_time) == (T0, T0 + 2 * MINUTE)
        candles = await services.candle_imports.imported_candles(
            "BTC/USDT", timeframe="1m", start=T0, end=FAR
        )
        assert [
            (c.open_time, c.open, c.high, c.low, c.close, c.volume, c.trades) for c in candles
        ] == [(T0 + i * MINUTE, D(100), D(102), D(99), D(101), D("1.5"), i) for i in range(3)]

    async def test_one_bad_row_in_the_middle_writes_nothing(self, services: Services) -> None:
        lines = rows(5000)
        lines[2500] = lines[2500].replace(",99,", ",103,")  # low above the open
        with pytest.raises(ValidationFailedError) as refused:
            await services.candle_imports.import_csv("BTC/USDT", timeframe="1m", body=body(lines))
        assert refused.value.code == "invalid_csv"
        assert refused.value.details["errors"] == [
            {"line": 2502, "column": "low", "reason": "103 is above the open or the close"}
        ]
        assert refused.value.details["error_count"] == 1
        assert await all_imported(services) == []

    async def test_a_duplicate_anywhere_writes_nothing(self, services: Services) -> None:
        lines = rows(3000)
        lines.append(lines[10])
        with pytest.raises(ValidationFailedError) as refused:
            await services.candle_imports.import_csv("BTC/USDT", timeframe="1m", body=body(lines))
        assert refused.value.details["errors"][0]["line"] == 3002
        assert await all_imported(services) == []

    async def test_a_reimport_overwrites_the_same_open_times(self, services: Services) -> None:
        imports = services.candle_imports
        await imports.import_csv("BTC/USDT", timeframe="1m", body=body(rows(3)))
        await imports.import_csv(
            "BTC/USDT", timeframe="1m", body=body(rows(2, start=T0 + MINUTE, close="105"))
        )
        assert await all_imported(services) == [D(101), D(105), D(105)]

    async def test_the_simulated_series_is_never_rewritten(self, services: Services) -> None:
        start = CLOCK - timedelta(hours=2)
        before = await services.market_data.candles("BTC/USD", timeframe="1m", start=start, limit=5)
        await services.candle_imports.import_csv(
            "BTC/USD", timeframe="1m", body=body(rows(5, start=start, close="99.5"))
        )
        after = await services.market_data.candles("BTC/USD", timeframe="1m", start=start, limit=5)
        assert after == before
        assert D("99.5") not in [c.close for c in after]
        assert await all_imported(services, "BTC/USD") == [D("99.5")] * 5

    async def test_a_body_over_the_cap_is_refused_with_413(self, services: Services) -> None:
        imports = services.candle_imports
        imports.max_bytes = 2048
        with pytest.raises(AppError) as streamed:
            await imports.import_csv("BTC/USDT", timeframe="1m", body=body(rows(100), chunk=512))
        assert (streamed.value.status_code, streamed.value.code) == (413, "payload_too_large")
        with pytest.raises(AppError) as declared:
            await imports.import_csv(
                "BTC/USDT", timeframe="1m", body=body(rows(1)), declared_size=4096
            )
        assert declared.value.status_code == 413
        assert await all_imported(services) == []

    @pytest.mark.parametrize(
        ("symbol", "timeframe"), [("BTC USD", "1m"), ("x" * 33, "1m"), ("BTC/USD", "2m")]
    )
    async def test_a_bad_symbol_or_timeframe(
        self, services: Services, symbol: str, timeframe: str
    ) -> None:
        with pytest.raises(ValidationFailedError):
            await services.candle_imports.import_csv(
                symbol, timeframe=timeframe, body=body(rows(1))
            )


class TestImportedCandles:
    async def test_reads_start_inclusive_end_exclusive_past_one_page(
        self, services: Services
    ) -> None:
        count = MAX_CANDLES * 2 + 500
        await services.candle_imports.import_csv("ETH/USDT", timeframe="1m", body=body(rows(count)))
        start, end = T0 + 3 * MINUTE, T0 + (count - 2) * MINUTE
        candles = await services.candle_imports.imported_candles(
            "ETH-USDT", timeframe="1m", start=start, end=end
        )
        assert [c.open_time for c in candles] == [start + i * MINUTE for i in range(count - 5)]

    async def test_the_listing_is_a_404_for_a_series_never_imported(
        self, services: Services
    ) -> None:
        with pytest.raises(NotFoundError):
            await services.candle_imports.list_imported("NOPE/USD", timeframe="1m")
        await services.candle_imports.import_csv("NOPE/USD", timeframe="1m", body=body(rows(2)))
        symbol, candles = await services.candle_imports.list_imported(
            "nope-usd", timeframe="1m", limit=1
        )
        assert (symbol, [c.open_time for c in candles]) == ("NOPE/USD", [T0])
