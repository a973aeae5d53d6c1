"""The read side: orders and fills by keyset, on each database. Walks every page while
new rows are inserted between pages, and checks that nothing repeats or goes missing."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.config import Settings
from core.exceptions import NotFoundError, ValidationFailedError
from database.orm import Order
from main_consolidated import create_app
from models.enums import OrderSide
from models.trading import CursorPage, OrderRead, TradeRead
from services.container import Services
from services.paper_trading.activity import decode_cursor, encode_cursor
from tests.api.conftest import running_app
from tests.services.paper_trading.test_lifecycle import (
    ETH,
    SYMBOL,
    buy,
    new_account,
    order,
    rest,
)
from tests.services.paper_trading.test_service import tick

D = Decimal


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
    )
    app = create_app(settings)
    async with running_app(app):
        yield app.state.services


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


class TestCursor:
    def test_round_trips(self) -> None:
        at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        row_id = uuid.uuid4()
        assert decode_cursor("o", encode_cursor("o", at, row_id)) == (at, row_id)

    @pytest.mark.parametrize(
        ("cursor", "reason"),
        [
            ("", "not a cursor of this API"),
            ("%%%", "not base64url text"),
            ("gA", "not base64url text"),  # decodes to a byte that is not UTF-8
            (_raw("o|2026-01-01T00:00:00+00:00"), "not a cursor of this API"),
            (_raw(f"f|2026-01-01T00:00:00+00:00|{uuid.uuid4().hex}"), "of the fills list"),
            (_raw(f"x|2026-01-01T00:00:00+00:00|{uuid.uuid4().hex}"), "not a cursor"),
            (_raw(f"o|yesterday|{uuid.uuid4().hex}"), "not a timestamp and an id"),
            (_raw("o|2026-01-01T00:00:00+00:00|not-an-id"), "not a timestamp and an id"),
            (_raw(f"o|2026-01-01T00:00:00|{uuid.uuid4().hex}"), "no time zone"),
            (_raw(f"o|0001-01-01T00:00:00+14:00|{uuid.uuid4().hex}"), "out of range"),
        ],
    )
    def test_a_malformed_cursor_is_refused_with_the_reason(self, cursor: str, reason: str) -> None:
        with pytest.raises(ValidationFailedError) as refused:
            decode_cursor("o", cursor)
        assert refused.value.code == "invalid_cursor"
        assert reason in refused.value.details["reason"]
        assert refused.value.details["cursor"] == cursor


async def _walk_orders(
    services: Services, user_id: uuid.UUID, limit: int, between: int = 0
) -> list[list[OrderRead]]:
    """Every page, placing `between` new resting orders after each page."""
    pages: list[list[OrderRead]] = []
    cursor: str | None = None
    while True:
        page: CursorPage[OrderRead] = await services.paper_activity.orders(
            user_id, limit=limit, cursor=cursor
        )
        assert page.limit == limit
        assert len(page.items) <= limit
        pages.append(page.items)
        for _ in range(between):
            await services.paper_trading.place_order(
                user_id, order("buy", "1", order_type="limit", price="40")
            )
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


class TestOrders:
    async def test_walks_every_order_once_while_new_ones_arrive(self, services: Services) -> None:
        account = await new_account(services)
        await services.paper_trading.on_ticks(tick("99", "100"))
        placed = [
            await rest(services, account, "buy", "1", order_type="limit", price=str(50 + i))
            for i in range(7)
        ]
        pages = await _walk_orders(services, account.user_id, limit=3, between=2)
        assert [len(p) for p in pages] == [3, 3, 1]
        walked = [o.id for p in pages for o in p]
        assert walked == [o.id for o in reversed(placed)]  # newest first, each once
        assert len(await _all_orders(services, account.user_id)) == 7 + 2 * 3

    async def test_a_last_full_page_has_no_cursor(self, services: Services) -> None:
        account = await new_account(services)
        await services.paper_trading.on_ticks(tick("99", "100"))
        for i in range(6):
            await rest(services, account, "buy", "1", order_type="limit", price=str(50 + i))
        pages = await _walk_orders(services, account.user_id, limit=3)
        assert [len(p) for p in pages] == [3, 3]

    async def test_orders_of_one_instant_are_ordered_by_id(self, services: Services) -> None:
        account = await new_account(services)
        at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        ids = sorted((uuid.uuid4() for _ in range(5)), reverse=True)
        async with services.database.database.transaction() as session:
            session.add_all(
                Order(
                    id=order_id,
                    user_id=account.user_id,
                    account_id=account.id,
                    symbol=SYMBOL,
                    side="buy",
                    order_type="limit",
                    time_in_force="GTC",
                    quantity=D("0.1"),
                    price=D("50"),
                    status="cancelled",
                    filled_quantity=D(0),
                    fees=D(0),
                    locked_amount=D(0),
                    created_at=at,
                    updated_at=at,
                )
                for order_id in ids
            )
        pages = await _walk_orders(services, account.user_id, limit=2)
        assert [o.id for p in pages for o in p] == ids

    async def test_filters_and_fills_come_with_each_order(self, services: Services) -> None:
        account = await new_account(services)
        filled = await buy(services, account, "1")
        await services.paper_trading.on_ticks(tick("99", "100"))
        await rest(services, account, "buy", "1", order_type="limit", price="50")
        page = await services.paper_activity.orders(
            account.user_id, status="filled", symbol="BTC-USD", side=OrderSide.BUY
        )
        assert [o.id for o in page.items] == [filled.id]
        assert page.items[0].fills == filled.fills
        assert page.next_cursor is None
        with pytest.raises(NotFoundError):
            await services.paper_activity.orders(account.user_id, symbol="NOPE-USD")

    async def test_another_users_orders_never_appear(self, services: Services) -> None:
        mine = await new_account(services)
        theirs = await new_account(services)
        await buy(services, theirs, "1")
        page = await services.paper_activity.orders(mine.user_id)
        assert page.items == []
        assert page.next_cursor is None

    async def test_history_keeps_offset_and_total(self, services: Services) -> None:
        account = await new_account(services)
        await services.paper_trading.on_ticks(tick("99", "100"))
        placed = [
            await rest(services, account, "buy", "1", order_type="limit", price=str(50 + i))
            for i in range(3)
        ]
        page = await services.paper_activity.history(account.user_id, limit=2, offset=1)
        assert (page.total, page.limit, page.offset) == (3, 2, 1)
        assert [o.id for o in page.items] == [placed[1].id, placed[0].id]


async def _all_orders(services: Services, user_id: uuid.UUID) -> list[OrderRead]:
    return (await services.paper_activity.history(user_id, limit=500)).items


async def _walk_fills(services: Services, user_id: uuid.UUID, limit: int) -> list[TradeRead]:
    fills: list[TradeRead] = []
    cursor: str | None = None
    while True:
        page = await services.paper_activity.fills(user_id, limit=limit, cursor=cursor)
        fills.extend(page.items)
        # A new fill between pages: newer than the cursor, so never in this walk.
        await services.paper_trading.on_ticks(tick("99", "100", asks=[("100", "10")]))
        await services.paper_trading.place_order(user_id, order("buy", "0.1"))
        if page.next_cursor is None:
            return fills
        cursor = page.next_cursor


class TestFills:
    async def test_walks_fills_of_one_instant_once_while_new_ones_arrive(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await services.paper_trading.on_ticks(
            tick("99", "100", asks=[("100", "0.5"), ("101", "0.5"), ("102", "5")])
        )
        walked_book = await services.paper_trading.place_order(account.user_id, order("buy", "2"))
        assert len(walked_book.fills) == 3  # three fills booked at one instant
        first = await buy(services, account, "1")
        expected = [first.fills[0].id, *sorted((f.id for f in walked_book.fills), reverse=True)]

        fills = await _walk_fills(services, account.user_id, limit=1)

        assert [f.id for f in fills] == expected
        assert [f.order_id for f in fills] == [first.id] + [walked_book.id] * 3
        assert fills[1].symbol == SYMBOL
        assert fills[1].side is OrderSide.BUY
        assert fills[1].account_id == account.id
        assert fills[1].fee_asset == "USD"
        assert fills[1].liquidity == "taker"
        assert sorted(f.price for f in fills[1:]) == [D("100"), D("101"), D("102")]

    async def test_filters(self, services: Services) -> None:
        account = await new_account(services)
        other = await new_account(services, user_id=account.user_id, is_default=False)
        bought = await buy(services, account, "1")
        await buy(services, account, "1", ETH)
        await buy(services, other, "1")
        await services.paper_trading.on_ticks(tick("120", "121", bids=[("120", "10")]))
        sold = await services.paper_trading.place_order(account.user_id, order("sell", "0.5"))
        user = account.user_id
        activity = services.paper_activity

        by_account = await activity.fills(user, account_id=other.id)
        assert [f.account_id for f in by_account.items] == [other.id]
        by_symbol = await activity.fills(user, symbol="ETH-USD")
        assert [f.symbol for f in by_symbol.items] == [ETH]
        sells = await activity.fills(user, side=OrderSide.SELL)
        assert [f.order_id for f in sells.items] == [sold.id]
        assert sells.items[0].realized_pnl == D("10")  # 0.5 sold at 120, bought at 100
        by_order = await activity.fills(user, order_id=bought.id)
        assert [f.id for f in by_order.items] == [bought.fills[0].id]
        at = sold.fills[0].executed_at
        since = await activity.fills(user, start=at)
        assert [f.id for f in since.items] == [sold.fills[0].id]
        until = await activity.fills(user, end=at)
        assert sold.fills[0].id not in {f.id for f in until.items}
        assert len(until.items) == 3
        later = await activity.fills(user, start=at + timedelta(seconds=1))
        assert later.items == []

    async def test_another_users_fills_never_appear(self, services: Services) -> None:
        mine = await new_account(services)
        theirs = await new_account(services)
        bought = await buy(services, theirs, "1")
        assert (await services.paper_activity.fills(mine.user_id)).items == []
        assert (await services.paper_activity.fills(mine.user_id, order_id=bought.id)).items == []

    async def test_an_orders_cursor_is_refused(self, services: Services) -> None:
        account = await new_account(services)
        cursor = encode_cursor("o", datetime.now(UTC), uuid.uuid4())
        with pytest.raises(ValidationFailedError) as refused:
            await services.paper_activity.fills(account.user_id, cursor=cursor)
        assert refused.value.code == "invalid_cursor"
