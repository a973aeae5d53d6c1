"""Market data: live tickers and books, candles, pairs, the watchlist, subscriptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from connectors.base import OrderBook
from models.base import ErrorResponse, IsoDatetime
from models.enums import Timeframe
from models.imports import IMPORT_SYMBOL, IMPORT_SYMBOL_PATTERN, CandleImportRead
from models.market import (
    SYMBOL_FORMS,
    CandleList,
    CandleRead,
    LiveDataRead,
    OrderBookRead,
    PairList,
    PairRead,
    SubscriptionRead,
    TickerRead,
    WatchlistAdd,
    WatchlistItemRead,
    WatchlistRead,
)
from services.market_data.service import MAX_BOOK_DEPTH, MAX_CANDLES, WatchlistEntry

# Exact-decimal bodies here too: the same JSON parsing (and its 422s) on every route.
router = APIRouter(prefix="/market", tags=["market"], route_class=ExactDecimalRoute)

# `:path` so that an encoded slash (BTC%2FUSD, decoded before routing) still matches.
Symbol = Annotated[str, Path(description=SYMBOL_FORMS)]

_NOT_TRADED = "The symbol is not traded."

_CSV_EXAMPLE = (
    "open_time,open,high,low,close,volume\n"
    "2024-01-01T00:00:00Z,42000.5,42110,41950.25,42080,12.5\n"
    "2024-01-01T00:01:00Z,42080,42090,42001,42010.75,3.25\n"
)
_CSV_BODY = {
    "requestBody": {
        "required": True,
        "description": "A CSV file with a header row, UTF-8 (a BOM is fine), LF or CRLF, "
        "rows in any order. Columns (names in any case and order; others are ignored): one "
        "time column `open_time`, `timestamp`, `time` or `date`; `open`, `high`, `low`, "
        "`close`, `volume`; optional `quote_volume` and `trades_count`. Times are ISO 8601 "
        "with a zone (`Z`, `+02:00`; a date alone is midnight UTC) or Unix epoch integers, "
        "seconds below 10^11 and milliseconds from 10^11. Send it as is or chunked: it is "
        "read as it streams. The rules in full: docs/imports.md.",
        "content": {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}},
    }
}


def _watchlist_item(entry: WatchlistEntry) -> WatchlistItemRead:
    ticker = None if entry.ticker is None else TickerRead.model_validate(entry.ticker)
    return WatchlistItemRead(symbol=entry.symbol, added_at=entry.added_at, ticker=ticker)


@router.get(
    "/live-data/{symbol:path}",
    operation_id="getLiveMarketData",
    response_model=LiveDataRead,
    responses=error_responses(not_found=_NOT_TRADED, invalid=INVALID_REQUEST),
    summary="A symbol's latest ticker and book",
)
async def live_data(
    symbol: Symbol,
    services: ServicesDep,
    depth: Annotated[
        int | None, Query(ge=1, le=MAX_BOOK_DEPTH, description="Book levels a side to include.")
    ] = None,
) -> LiveDataRead:
    """The symbol's latest ticker, and the top of its book with `?depth=N`: the book
    as paper orders have left it (what they took recovers over the next market steps,
    see docs/paper-exchange.md), so it is what the next order would walk."""
    live = services.market_data.live_data(symbol, depth=None)
    ticker = TickerRead.model_validate(live.ticker)
    book = None
    if depth is not None:
        venue = services.paper_trading.taker_book(live.ticker.symbol)
        book = OrderBookRead.model_validate(
            OrderBook(venue.symbol, venue.bids[:depth], venue.asks[:depth], venue.timestamp)
        )
    return LiveDataRead(**ticker.model_dump(), book=book)


@router.get(
    "/historical/{symbol:path}",
    operation_id="getHistoricalCandles",
    response_model=CandleList,
    responses=error_responses(
        not_found=_NOT_TRADED,
        invalid="An invalid timeframe, limit or time, or start not before end.",
    ),
    summary="A symbol's candles",
)
async def historical(
    symbol: Symbol,
    services: ServicesDep,
    timeframe: Timeframe = Timeframe.M1,
    start: Annotated[
        IsoDatetime | None, Query(description="Oldest candle wanted (UTC if no offset).")
    ] = None,
    end: Annotated[IsoDatetime | None, Query(description="Newest open time wanted.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CANDLES)] = 500,
) -> CandleList:
    """Candles oldest first: the first `limit` from `start`, else the latest `limit`."""
    candles = await services.market_data.candles(
        symbol, timeframe=timeframe.value, start=start, end=end, limit=limit
    )
    return CandleList(
        symbol=services.market_data.resolve_symbol(symbol),
        timeframe=timeframe,
        items=[CandleRead.model_validate(c) for c in candles],
    )


def _declared_size(request: Request) -> int | None:
    length = request.headers.get("content-length", "")
    return int(length) if length.isascii() and length.isdigit() else None


@router.post(
    "/candles/import",
    operation_id="importCandles",
    response_model=CandleImportRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        413: {
            "model": ErrorResponse,
            "description": "The body is larger than MARKET_DATA_IMPORT_MAX_BYTES "
            "(`payload_too_large`, the limit in `details.max_bytes`).",
        },
        **error_responses(
            invalid="A bad symbol or timeframe (`validation_failed`), or a file with bad "
            "rows (`invalid_csv`: `details.errors` lists the first 100 as {line, column, "
            "reason}, `details.error_count` and `details.bad_rows` count them all). "
            "Nothing is imported then."
        ),
    },
    openapi_extra=_CSV_BODY,
    summary="Import candles from a CSV file",
)
async def import_candles(
    request: Request,
    services: ServicesDep,
    symbol: Annotated[
        str,
        Query(
            min_length=1, max_length=32, pattern=IMPORT_SYMBOL_PATTERN, description=IMPORT_SYMBOL
        ),
    ],
    timeframe: Annotated[Timeframe, Query(description="The candles' timeframe.")],
) -> CandleImportRead:
    """Store a CSV of OHLCV candles for any symbol, all or nothing: every row is checked
    (each bad row is reported by line and column) before any is written, then all are
    written in one transaction under the exchange `imported`, overwriting candles
    imported before at the same open times. The market's own series are never touched."""
    imported = await services.candle_imports.import_csv(
        symbol,
        timeframe=timeframe.value,
        body=request.stream(),
        declared_size=_declared_size(request),
    )
    return CandleImportRead.model_validate(imported)


@router.get(
    "/candles/imported/{symbol:path}",
    operation_id="getImportedCandles",
    response_model=CandleList,
    responses=error_responses(
        not_found="No candles of this symbol and timeframe were imported.",
        invalid="An invalid symbol, timeframe, limit or time, or start not before end.",
    ),
    summary="A symbol's imported candles",
)
async def imported_candles(
    symbol: Annotated[str, Path(description=IMPORT_SYMBOL)],
    services: ServicesDep,
    timeframe: Timeframe = Timeframe.M1,
    start: Annotated[
        IsoDatetime | None, Query(description="Oldest open time wanted (UTC if no offset).")
    ] = None,
    end: Annotated[
        IsoDatetime | None, Query(description="Open times before this one (exclusive).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CANDLES)] = 500,
) -> CandleList:
    """Imported candles opening in [start, end), oldest first, the first `limit` of them."""
    resolved, candles = await services.candle_imports.list_imported(
        symbol, timeframe=timeframe.value, start=start, end=end, limit=limit
    )
    return CandleList(
        symbol=resolved,
        timeframe=timeframe,
        items=[CandleRead.model_validate(c) for c in candles],
    )


@router.get(
    "/pairs",
    operation_id="listTradingPairs",
    response_model=PairList,
    responses=error_responses(),
    summary="The tradable pairs and their rules",
)
async def pairs(services: ServicesDep) -> PairList:
    """The tradable pairs and their rules (tick, step, minimums, fees)."""
    market = services.market_data
    return PairList(
        exchange=market.exchange_name,
        items=[PairRead.model_validate(rules) for rules in market.pairs()],
    )


@router.get(
    "/watchlist",
    operation_id="getWatchlist",
    response_model=WatchlistRead,
    responses=error_responses(),
    summary="The user's watchlist with live tickers",
)
async def get_watchlist(services: ServicesDep, user_id: CurrentUserId) -> WatchlistRead:
    """The user's watchlist, oldest first, each symbol with its live ticker."""
    entries = await services.market_data.watchlist(user_id)
    return WatchlistRead(items=[_watchlist_item(e) for e in entries])


@router.post(
    "/watchlist",
    operation_id="addToWatchlist",
    response_model=WatchlistItemRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        not_found=_NOT_TRADED,
        conflict="The symbol is already on the watchlist.",
        invalid=INVALID_REQUEST,
    ),
    summary="Watch a symbol",
)
async def add_to_watchlist(
    body: WatchlistAdd, services: ServicesDep, user_id: CurrentUserId
) -> WatchlistItemRead:
    """Watch a traded symbol; adding one already watched is a 409."""
    entry = await services.market_data.add_to_watchlist(user_id, symbol=body.symbol)
    return _watchlist_item(entry)


@router.delete(
    "/watchlist/{symbol:path}",
    operation_id="removeFromWatchlist",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        not_found="The symbol is not on the watchlist.", invalid=INVALID_REQUEST
    ),
    summary="Stop watching a symbol",
)
async def remove_from_watchlist(
    symbol: Symbol, services: ServicesDep, user_id: CurrentUserId
) -> None:
    """Stop watching the symbol (404 when it is not on the watchlist)."""
    await services.market_data.remove_from_watchlist(user_id, symbol=symbol)


@router.post(
    "/subscribe/{symbol:path}",
    operation_id="subscribeToMarketData",
    response_model=SubscriptionRead,
    responses=error_responses(not_found=_NOT_TRADED, invalid=INVALID_REQUEST),
    summary="Publish a symbol's ticks over the WebSocket",
)
async def subscribe(symbol: Symbol, services: ServicesDep) -> SubscriptionRead:
    """Publish the symbol's ticks as `market_data` events; returns the channel to join."""
    channel = services.market_data.subscribe(symbol)
    return SubscriptionRead(symbol=services.market_data.resolve_symbol(symbol), channel=channel)
