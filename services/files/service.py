"""Candle import: a CSV of OHLCV for any symbol, stored whole or not at all.

`CandleImportService.import_csv` reads the upload as it streams in, checks every row
(services/files/csv_candles.py) and spools the checked candles to a temporary file
(memory up to SPOOL_IN_MEMORY, disk beyond), so memory stays bounded whatever the
file's size. Only when the whole file has passed, duplicates included, are the candles
written: in one transaction, upserted in batches of WRITE_BATCH. A bad row anywhere
means nothing is written at all; a good file is committed whole, and a re-import of the
same open times overwrites them.

Validating before writing, rather than writing as the rows arrive inside one open
transaction, keeps the database's write lock (SQLite takes it at BEGIN) for the time
the rows take to write, not for as long as a slow client takes to upload.

The candles are stored in `market_data_ohlcv` under the exchange IMPORTED_EXCHANGE,
never under the simulated market's, so the paper exchange's own history is never
rewritten. `imported_candles` reads a series back for backtests.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from tempfile import SpooledTemporaryFile
from typing import IO, Any

import structlog

from connectors.base import Candle
from core.config import MarketDataSettings
from core.exceptions import AppError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from database.repositories import market_data as market_repo
from services.files.csv_candles import CandleCsvParser, ParsedCandle
from services.infra.database import DatabaseService
from services.market_data.history import MAX_CANDLES, TIMEFRAMES, as_utc, candle_of
from utils.candles import timeframe_delta

log = structlog.get_logger(__name__)

IMPORTED_EXCHANGE = "imported"
WRITE_BATCH = 2000
SPOOL_IN_MEMORY = 8 * 1024 * 1024
MAX_SYMBOL_LENGTH = 32
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9/._:]{0,31}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CandleImport:
    """What one import wrote."""

    symbol: str
    timeframe: str
    exchange: str
    rows: int
    first_open_time: datetime
    last_open_time: datetime
    seconds: float


def normalize_symbol(raw: str) -> str:
    """`btc-usdt` -> `BTC/USDT`; ValidationFailedError for an empty, overlong or odd one."""
    symbol = raw.strip().upper().replace("-", "/")
    if not _SYMBOL.fullmatch(symbol):
        raise ValidationFailedError(
            f"invalid symbol {raw[:40]!r}: 1 to {MAX_SYMBOL_LENGTH} letters, digits "
            "and / - . _ :, starting with a letter or digit",
            details={"symbol": raw[:40]},
        )
    return symbol


def _check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValidationFailedError(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}",
            details={"timeframe": timeframe},
        )


def _too_large(max_bytes: int) -> AppError:
    return AppError(
        f"the file is larger than the {max_bytes}-byte limit (MARKET_DATA_IMPORT_MAX_BYTES)",
        code="payload_too_large",
        status_code=413,
        details={"max_bytes": max_bytes},
    )


def _refusal(parser: CandleCsvParser) -> ValidationFailedError:
    first = parser.errors[0]
    where = f"line {first.line}" + (f", {first.column}" if first.column else "")
    return ValidationFailedError(
        f"{parser.error_count} problem(s) in {parser.bad_rows} row(s), nothing was imported; "
        f"the first: {where}: {first.reason}",
        code="invalid_csv",
        details={
            "errors": [
                {"line": e.line, "column": e.column, "reason": e.reason} for e in parser.errors
            ],
            "error_count": parser.error_count,
            "bad_rows": parser.bad_rows,
        },
    )


def _spooled(candles: Iterable[ParsedCandle]) -> bytes:
    # One compact line a candle: epoch microseconds, then the exact decimals as text.
    return "".join(
        f"{(c.open_time - _EPOCH) // _MICROSECOND},{c.open},{c.high},{c.low},{c.close},"
        f"{c.volume},{'' if c.quote_volume is None else c.quote_volume},"
        f"{'' if c.trades is None else c.trades}\n"
        for c in candles
    ).encode("ascii")


def _read_rows(spool: IO[bytes], series: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The next `count` spooled candles as rows of market_data_ohlcv (fewer at the end)."""
    delta = timeframe_delta(series["timeframe"])
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for _ in range(count):
        line = spool.readline()
        if not line:
            break
        micros, open_, high, low, close, volume, quote, trades = line.decode("ascii").split(",")
        open_time = _EPOCH + int(micros) * _MICROSECOND
        rows.append(
            {
                **series,
                "open_time": open_time,
                "close_time": open_time + delta,
                "open": Decimal(open_),
                "high": Decimal(high),
                "low": Decimal(low),
                "close": Decimal(close),
                "volume": Decimal(volume),
                "quote_volume": Decimal(quote) if quote else None,
                "trade_count": int(trades) if trades.strip() else None,
                "created_at": now,
            }
        )
    return rows


class CandleImportService:
    def __init__(self, database: DatabaseService, settings: MarketDataSettings) -> None:
        self._database = database
        self.max_bytes = settings.market_data_import_max_bytes
        self.imports = 0
        self.refused = 0
        self.rows_imported = 0

    async def start(self) -> None:
        """Nothing to start: an import holds nothing between requests."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy(
            "ok", imports=self.imports, refused=self.refused, rows_imported=self.rows_imported
        )

    async def import_csv(
        self,
        symbol: str,
        *,
        timeframe: str,
        body: AsyncIterable[bytes],
        declared_size: int | None = None,
    ) -> CandleImport:
        """Stores every candle of the CSV under `imported`, or none: a bad row anywhere
        refuses the file (422, each bad row by line), a body over the cap is a 413."""
        started = time.perf_counter()
        resolved = normalize_symbol(symbol)
        _check_timeframe(timeframe)
        if declared_size is not None and declared_size > self.max_bytes:
            self.refused += 1
            raise _too_large(self.max_bytes)
        parser = CandleCsvParser(timeframe)
        with SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b") as spool:
            try:
                await self._spool(parser, body, spool)
            except AppError:
                self.refused += 1
                raise
            if parser.error_count:
                self.refused += 1
                log.info(
                    "candle_import_refused",
                    symbol=resolved,
                    timeframe=timeframe,
                    errors=parser.error_count,
                )
                raise _refusal(parser)
            await asyncio.to_thread(spool.seek, 0)
            series = {"exchange": IMPORTED_EXCHANGE, "symbol": resolved, "timeframe": timeframe}
            async with self._database.database.transaction() as session:
                while rows := await asyncio.to_thread(_read_rows, spool, series, WRITE_BATCH):
                    await market_repo.upsert_candles(session, rows)
        first_open, last_open = parser.span
        self.imports += 1
        self.rows_imported += parser.rows
        seconds = time.perf_counter() - started
        log.info(
            "candles_imported",
            symbol=resolved,
            timeframe=timeframe,
            rows=parser.rows,
            seconds=round(seconds, 3),
        )
        return CandleImport(
            symbol=resolved,
            timeframe=timeframe,
            exchange=IMPORTED_EXCHANGE,
            rows=parser.rows,
            first_open_time=first_open,
            last_open_time=last_open,
            seconds=seconds,
        )

    async def _spool(
        self, parser: CandleCsvParser, body: AsyncIterable[bytes], spool: IO[bytes]
    ) -> None:
        """Feeds the body to the parser; spools its candles while no row has failed."""
        received = 0
        async for chunk in body:
            received += len(chunk)
            if received > self.max_bytes:
                raise _too_large(self.max_bytes)
            candles = parser.feed(chunk)
            if candles and not parser.error_count:
                await asyncio.to_thread(spool.write, _spooled(candles))
        candles = parser.finish()
        if candles and not parser.error_count:
            await asyncio.to_thread(spool.write, _spooled(candles))

    async def imported_candles(
        self, symbol: str, *, timeframe: str, start: datetime, end: datetime
    ) -> list[Candle]:
        """Every imported candle of the series opening in [start, end), oldest first,
        read MAX_CANDLES at a time (an empty list when none was imported there)."""
        resolved = normalize_symbol(symbol)
        _check_timeframe(timeframe)
        delta = timeframe_delta(timeframe)
        candles: list[Candle] = []
        cursor = start
        while cursor < end:
            page = await self._page(resolved, timeframe, cursor, end, MAX_CANDLES)
            candles.extend(page)
            if len(page) < MAX_CANDLES:
                break
            cursor = page[-1].open_time + delta
        return candles

    async def list_imported(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
    ) -> tuple[str, list[Candle]]:
        """The normalised symbol and its first `limit` imported candles opening in
        [start, end), oldest first; NotFoundError when none of the series was imported."""
        resolved = normalize_symbol(symbol)
        _check_timeframe(timeframe)
        if not 1 <= limit <= MAX_CANDLES:
            raise ValidationFailedError(
                f"limit must be between 1 and {MAX_CANDLES}", details={"limit": limit}
            )
        start = as_utc(start) or _EPOCH
        end = as_utc(end) or _LATEST
        if start >= end:
            raise ValidationFailedError(
                "start must be before end",
                details={"start": start.isoformat(), "end": end.isoformat()},
            )
        async with self._database.database.read() as session:
            earliest = await market_repo.earliest_candle_time(
                session, exchange=IMPORTED_EXCHANGE, symbol=resolved, timeframe=timeframe
            )
        if earliest is None:
            raise NotFoundError(
                f"no {timeframe} candles of {resolved} were imported",
                details={"symbol": resolved, "timeframe": timeframe},
            )
        return resolved, await self._page(resolved, timeframe, start, end, limit)

    async def _page(
        self, symbol: str, timeframe: str, start: datetime, end: datetime, limit: int
    ) -> list[Candle]:
        async with self._database.database.read() as session:
            rows = await market_repo.candle_page(
                session,
                exchange=IMPORTED_EXCHANGE,
                symbol=symbol,
                timeframe=timeframe,
                start=start,
                end=end,
                limit=limit,
            )
        return [candle_of(row) for row in rows]
