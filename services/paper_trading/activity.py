"""The paper exchange's read side: orders and fills, newest first.

- `orders` and `fills` page by keyset: the cursor is the (timestamp, id) of the last row
  a page returned, and the next page is the rows strictly older in that order. One
  statement per page, no COUNT, and rows added while a client walks the list are newer
  than its cursor, so a walk never repeats or skips a row.
- `history` is the seed's offset list (`offset`, `total`): a COUNT and an OFFSET on
  every call, kept for /history and for in-process callers that want a total.

A cursor is opaque to clients: base64url of `kind|timestamp|id`. The kind ties it to
its list (an orders cursor is refused by /fills); anything that does not decode is a
422 `invalid_cursor` with the reason, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Literal

from core.exceptions import ValidationFailedError
from database.repositories import orders as order_repo
from database.repositories import trades as trade_repo
from database.repositories.orders import OrderListStatus
from models.base import Page
from models.enums import OrderSide
from models.trading import CursorPage, OrderRead, TradeRead
from services.infra.database import DatabaseService
from services.paper_trading.booking import MarketView, read_orders

CursorKind = Literal["o", "f"]
_KINDS: dict[str, str] = {"o": "orders", "f": "fills"}
_SEPARATOR = "|"


def encode_cursor(kind: CursorKind, at: datetime, row_id: uuid.UUID) -> str:
    """The cursor after the row (`at`, `row_id`) of list `kind`."""
    raw = _SEPARATOR.join((kind, at.isoformat(), row_id.hex))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _invalid(cursor: str, reason: str) -> ValidationFailedError:
    return ValidationFailedError(
        f"invalid cursor: {reason}; pass back a next_cursor unchanged, or omit it for "
        "the first page",
        code="invalid_cursor",
        details={"cursor": cursor, "reason": reason},
    )


def decode_cursor(kind: CursorKind, cursor: str) -> tuple[datetime, uuid.UUID]:
    """(timestamp, id) of the row a cursor of list `kind` points after; raises a 422
    `invalid_cursor` naming what is wrong with it."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid(cursor, "not base64url text") from None
    parts = raw.split(_SEPARATOR)
    if len(parts) != 3:
        raise _invalid(cursor, "not a cursor of this API")
    found, at_text, id_text = parts
    if found != kind:
        name = _KINDS.get(found)
        reason = f"a cursor of the {name} list" if name else "not a cursor of this API"
        raise _invalid(cursor, f"{reason}, not of the {_KINDS[kind]} list")
    try:
        at = datetime.fromisoformat(at_text)
        row_id = uuid.UUID(hex=id_text)
    except ValueError:
        raise _invalid(cursor, "its position is not a timestamp and an id") from None
    if at.tzinfo is None:
        raise _invalid(cursor, "its timestamp has no time zone")
    try:
        return at.astimezone(UTC), row_id
    except OverflowError:
        raise _invalid(cursor, "its timestamp is out of range") from None


def _utc(name: str, value: datetime | None) -> datetime | None:
    """A time bound in UTC; a naive one, or one that leaves the calendar in UTC (year 1
    at +14:00), is a 422 rather than a failure at the database."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationFailedError(
            f"{name} needs a time zone (Z or an offset such as +00:00)",
            details={name: value.isoformat()},
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationFailedError(
            f"{name} is out of range in UTC", details={name: value.isoformat()}
        ) from None


class PaperActivity:
    """Lists of the user's orders and fills. Reads only: it opens no transaction."""

    def __init__(self, database: DatabaseService, market: MarketView) -> None:
        self._database = database
        self._market = market

    def _symbol(self, symbol: str | None) -> str | None:
        return self._market.resolve_symbol(symbol) if symbol is not None else None

    async def orders(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        status: OrderListStatus | None = None,
        symbol: str | None = None,
        side: OrderSide | None = None,
        agent_id: uuid.UUID | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CursorPage[OrderRead]:
        """The user's orders newest first, each with its fills, one keyset page; an
        unknown `symbol` is a 404, a malformed `cursor` a 422."""
        before = decode_cursor("o", cursor) if cursor is not None else None
        start, end = _utc("start", start), _utc("end", end)
        resolved = self._symbol(symbol)
        async with self._database.database.read() as session:
            rows = await order_repo.keyset_page(
                session,
                user_id=user_id,
                account_id=account_id,
                status=status,
                symbol=resolved,
                side=side.value if side is not None else None,
                agent_id=agent_id,
                start=start,
                end=end,
                before=before,
                limit=limit + 1,
            )
            page, more = rows[:limit], len(rows) > limit
            items = await read_orders(session, page)
        last = page[-1] if more else None
        return CursorPage[OrderRead](
            items=items,
            next_cursor=encode_cursor("o", last.created_at, last.id) if last else None,
            limit=limit,
        )

    async def history(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        status: OrderListStatus | None = None,
        symbol: str | None = None,
        side: OrderSide | None = None,
        agent_id: uuid.UUID | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[OrderRead]:
        """The user's orders newest first, each with its fills, by offset with the total
        (a COUNT per call; rows added between calls shift the pages)."""
        start, end = _utc("start", start), _utc("end", end)
        resolved = self._symbol(symbol)
        async with self._database.database.read() as session:
            total, rows = await order_repo.page(
                session,
                user_id=user_id,
                account_id=account_id,
                status=status,
                symbol=resolved,
                side=side.value if side is not None else None,
                agent_id=agent_id,
                start=start,
                end=end,
                limit=limit,
                offset=offset,
            )
            items = await read_orders(session, rows)
        return Page[OrderRead](items=items, total=total, limit=limit, offset=offset)

    async def fills(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        symbol: str | None = None,
        side: OrderSide | None = None,
        order_id: uuid.UUID | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CursorPage[TradeRead]:
        """The user's fills newest first, one keyset page; an unknown `symbol` is a
        404, a malformed `cursor` a 422."""
        before = decode_cursor("f", cursor) if cursor is not None else None
        start, end = _utc("start", start), _utc("end", end)
        resolved = self._symbol(symbol)
        async with self._database.database.read() as session:
            rows = await trade_repo.keyset_page(
                session,
                user_id=user_id,
                account_id=account_id,
                symbol=resolved,
                side=side.value if side is not None else None,
                order_id=order_id,
                start=start,
                end=end,
                before=before,
                limit=limit + 1,
            )
        page, more = rows[:limit], len(rows) > limit
        last = page[-1] if more else None
        return CursorPage[TradeRead](
            items=[TradeRead.model_validate(row) for row in page],
            next_cursor=encode_cursor("f", last.executed_at, last.id) if last else None,
            limit=limit,
        )
