"""The tick-driven fill path: resting limits that a market step crosses, and stops it
triggers, each applied in a transaction of its own.

A tick only touches the orders it crosses (the `OrderIndex`). Every fill is applied
with the account locked first, then the order re-read under its own lock and checked
to be open with exactly the quantity filled that the fill was computed from: a cancel
racing the fill, or a second instance matching the same order, can never fill it twice.
A fill that fails puts the order back in the index as the database has it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal, localcontext

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import Tick
from database.orm import OPEN_ORDER_STATUSES, Order, Trade
from database.orm.types import utcnow
from database.repositories import orders as order_repo
from models.enums import Liquidity, OrderSide, OrderStatus
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.paper_trading.booking import (
    ZERO,
    AccountGates,
    MarketView,
    Outbox,
    TakerBooks,
    announce,
    apply_fills,
    engine_order,
    finish,
    log,
    publish,
    read_order,
    release,
    trim_lock,
)
from services.paper_trading.matching import (
    MONEY_CONTEXT,
    OrderIndex,
    Outcome,
    RestingFill,
    StopTriggered,
    make_fill,
)
from services.paper_trading.matching import Order as EngineOrder


class TickFills:
    """Applies what the market's ticks do to open orders; the service owns one and
    shares its index, taker books and account gates with it."""

    def __init__(
        self,
        database: DatabaseService,
        market: MarketView,
        event_bus: EventBus,
        index: OrderIndex,
        books: TakerBooks,
        gates: AccountGates,
    ) -> None:
        self._database = database
        self._market = market
        self._bus = event_bus
        self._index = index
        self._books = books
        self._gate = gates
        self.fills_applied = 0
        self.fill_errors = 0

    async def on_ticks(self, ticks: Mapping[str, Tick]) -> None:
        for symbol, tick in ticks.items():
            self._books.set_book(symbol, tick.book)
            if not self._index.count(symbol):
                continue
            events = self._index.on_ticker(tick.ticker, maker_fee_bps=ZERO, book=tick.book)
            for event in events:
                try:
                    async with self._gate(uuid.UUID(event.order.account_id)):
                        if isinstance(event, RestingFill):
                            await self._apply_resting_fill(event)
                        else:
                            await self._apply_trigger(event)
                except Exception:
                    self.fill_errors += 1
                    log.exception("resting_order_failed", order_id=event.order.id)
                    await self._resync(event.order.id)

    async def _resync(self, order_id: str) -> None:
        """After a failed fill, put the order back in the index as the database has it."""
        self._index.cancel(order_id)
        async with self._database.database.read() as session:
            row = await order_repo.get_by_id(session, uuid.UUID(order_id))
            if row is not None and row.status in {s.value for s in OPEN_ORDER_STATUSES}:
                self._index.add(engine_order(row))

    async def _apply_resting_fill(self, event: RestingFill) -> None:
        after, fill = event.order, event.fill
        with localcontext(MONEY_CONTEXT):
            filled_before = after.quantity - after.remaining - fill.quantity
        async with self._database.database.transaction() as session:
            # Account first, then the order: the lock order every path takes.
            book = await ledger.lock_book(session, uuid.UUID(after.account_id))
            order = await _open_order(session, after.id, filled_before)
            if order is None:
                return
            outbox = Outbox(order.user_id)
            rules = self._market.pair_rules(order.symbol)
            maker = make_fill(
                fill.price, fill.quantity, book.account.maker_fee_bps, Liquidity.MAKER
            )
            now = utcnow()
            trades = await apply_fills(session, book, order, rules, [maker], now, outbox)
            if after.remaining:
                order.status = OrderStatus.PARTIAL.value
            else:
                order.status = OrderStatus.FILLED.value
                order.closed_at = now
                asset = rules.quote_asset if order.side == OrderSide.BUY.value else rules.base_asset
                release(book, order, asset)
            await ledger.write_balances(session, book)
            announce(outbox, read_order(order, trades), trades)
        self.fills_applied += 1
        await publish(self._bus, outbox)

    async def _apply_trigger(self, event: StopTriggered) -> None:
        converted = event.order
        with localcontext(MONEY_CONTEXT):
            filled_before = converted.quantity - converted.remaining
        rest: EngineOrder | None = None
        async with self._database.database.transaction() as session:
            book = await ledger.lock_book(session, uuid.UUID(converted.account_id))
            order = await _open_order(session, converted.id, filled_before)
            if order is None:
                return
            outbox = Outbox(order.user_id)
            rules = self._market.pair_rules(order.symbol)
            now = utcnow()
            order.triggered_at = now
            account = book.account
            execution = self._books.take(converted, account.taker_fee_bps)
            buy = order.side == OrderSide.BUY.value
            asset = rules.quote_asset if buy else rules.base_asset
            resting = execution.order.remaining if execution.outcome is Outcome.RESTING else ZERO
            rejected = False
            if buy:
                with localcontext(MONEY_CONTEXT):
                    shortfall = execution.notional + execution.fees - order.locked_amount
                if shortfall > book.free(asset):
                    release(book, order, asset)
                    order.status = OrderStatus.REJECTED.value
                    order.closed_at = now
                    order.reject_reason = (
                        f"stop triggered at {event.last_price}: the fill would cost "
                        f"{execution.notional + execution.fees} {asset}, more than the "
                        f"{order.locked_amount} held and the {book.free(asset)} free"
                    )
                    await ledger.write_balances(session, book)
                    announce(outbox, read_order(order, []), [])
                    rejected = True
                elif shortfall > 0:
                    ledger.change_balance(book, asset, free=-shortfall, locked=shortfall)
                    order.locked_amount = order.locked_amount + shortfall
            if not rejected:
                trades: list[Trade] = []
                if execution.fills:
                    trades = await apply_fills(
                        session, book, order, rules, execution.fills, now, outbox
                    )
                finish(order, execution, resting, now)
                if resting:
                    if buy:
                        trim_lock(book, order, asset, account, execution.order, resting)
                    rest = execution.order
                else:
                    release(book, order, asset)
                await ledger.write_balances(session, book)
                announce(outbox, read_order(order, trades), trades)
        if rest is not None:
            self._index.add(rest)
        await publish(self._bus, outbox)


async def _open_order(session: AsyncSession, order_id: str, filled_before: Decimal) -> Order | None:
    """The order, locked, if it is still open with exactly `filled_before` filled (the
    fill we are about to apply was computed from that state); None if it moved on."""
    order = await order_repo.lock_by_id(session, uuid.UUID(order_id))
    if order is None or order.status not in {s.value for s in OPEN_ORDER_STATUSES}:
        return None
    if order.filled_quantity != filled_before:
        return None
    return order
