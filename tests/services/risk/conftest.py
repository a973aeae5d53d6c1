"""Risk's tests on the real services of each database, the market stepped by hand (books
fed as ticks), the risk monitor's loops off so each test drives it itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from connectors.base import BookLevel, OrderBook, Tick, Ticker
from core.config import Settings
from database.orm import TradingAccount
from main_consolidated import create_app
from models.risk import LimitCreate, LimitRead
from models.trading import OrderCreate
from services.container import Services
from tests.api.conftest import running_app
from tests.factories import create_account, create_user
from tests.services.quiet import quiet_settings

D = Decimal
SYMBOL = "BTC/USD"


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    app = create_app(quiet_settings(make_settings, database_url))
    async with running_app(app):
        yield app.state.services


def mark(services: Services, symbol: str = SYMBOL) -> Decimal:
    price = services.market_data.mark_price(symbol)
    assert price is not None
    return price


def book_at(
    services: Services, *, ask: Decimal, bid: Decimal, symbol: str = SYMBOL
) -> dict[str, Tick]:
    """One market step whose book has 100 units at `bid` and at `ask`."""
    ticker = services.market_data.ticker(symbol)
    book = OrderBook(symbol, (BookLevel(bid, D(100)),), (BookLevel(ask, D(100)),), ticker.timestamp)
    return {
        symbol: Tick(
            Ticker(symbol, bid, ask, (bid + ask) / 2, D(0), D(0), D(0), ticker.timestamp), book
        )
    }


async def at_mark(services: Services, symbol: str = SYMBOL) -> None:
    """The book at the market's mark, a tick either side: fills are at the mark."""
    price = mark(services, symbol)
    await services.paper_trading.on_ticks(
        book_at(services, ask=price, bid=price - 1, symbol=symbol)
    )


def order(side: str, quantity: str, symbol: str = SYMBOL, **fields: Any) -> OrderCreate:
    return OrderCreate.model_validate(
        {"symbol": symbol, "side": side, "quantity": quantity, **fields}
    )


async def new_account(
    services: Services, cash: str = "100000", *, user_id: uuid.UUID | None = None
) -> TradingAccount:
    db = services.database.database
    owner = user_id if user_id is not None else (await create_user(db)).id
    return await create_account(
        db, user_id=owner, cash=cash, is_default=True, maker_fee_bps="10", taker_fee_bps="20"
    )


async def add_limit(services: Services, user_id: uuid.UUID, **fields: Any) -> LimitRead:
    return await services.risk.create_limit(user_id, LimitCreate.model_validate(fields))
