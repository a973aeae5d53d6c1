"""database/repositories/trades.py: an order's fills, and a page's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from database.connection import Database
from database.orm.types import utcnow
from database.repositories import trades
from tests.factories import create_account, create_order, create_trade


async def test_of_order_is_that_orders_fills_oldest_first(db: Database) -> None:
    account = await create_account(db)
    order = await create_order(db, account=account, quantity="3")
    other = await create_order(db, account=account)
    now = utcnow()
    late = await create_trade(db, order=order, quantity="1", executed_at=now)
    early = await create_trade(
        db, order=order, quantity="2", executed_at=now - timedelta(seconds=5)
    )
    await create_trade(db, order=other)
    async with db.read() as session:
        fills = await trades.of_order(session, order.id)
    assert [t.id for t in fills] == [early.id, late.id]


async def test_of_orders_is_the_fills_of_exactly_those_orders(db: Database) -> None:
    account = await create_account(db)
    first, second, third = [await create_order(db, account=account) for _ in range(3)]
    a = await create_trade(db, order=first)
    b = await create_trade(db, order=second)
    await create_trade(db, order=third)
    async with db.read() as session:
        fills = await trades.of_orders(session, [first.id, second.id])
    assert {t.id for t in fills} == {a.id, b.id}


async def test_add_is_written_at_the_flush(db: Database) -> None:
    account = await create_account(db)
    order = await create_order(db, account=account)
    async with db.transaction() as session:
        trade = trades.add(
            session,
            user_id=account.user_id,
            order_id=order.id,
            account_id=account.id,
            symbol="BTC/USD",
            side="buy",
            quantity=Decimal("0.01"),
            price=Decimal("100.5"),
            fee=Decimal("0.002"),
            fee_asset="USD",
            liquidity="taker",
            realized_pnl=Decimal(0),
            executed_at=utcnow(),
        )
    async with db.read() as session:
        [stored] = await trades.of_order(session, order.id)
    assert stored.id == trade.id
    assert (stored.price, stored.fee) == (Decimal("100.5"), Decimal("0.002"))
