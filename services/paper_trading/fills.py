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
from database.repositories import trades as trade_repo
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
    cancel_by_exchange,
    engine_order,
    finish,
    log,
    price_fills,
    publish,
    read_order,
    release,
    trim_lock,
)
from services.paper_trading.fees import FeeSchedule
from services.paper_trading.matching import (
    MONEY_CONTEXT,
    Execution,
    OrderIndex,
    Outcome,
    RestingFill,
    StopTriggered,
    make_fill,
)
from services.paper_trading.matching import Order as EngineOrder
from services.paper_trading.placing import PreTradeCheck


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
        *,
        fees: FeeSchedule,
    ) -> None:
        self._fees = fees
        # Orders whose fill failed once, and how: a second failure of the same kind
        # closes the order (`_resync`) instead of retrying it on every tick forever.
        self._failed: dict[str, str] = {}
        self._database = database
        self._market = market
        self._bus = event_bus
        self._index = index
        self._books = books
        # One venue for both, so makers and takers draw on the same depth in a step.
        if index.venue is not books.venue:
            index.use_venue(books.venue)
        self._gate = gates
        self.fills_applied = 0
        self.fill_errors = 0
        # The risk check (set once the risk service is built): a kill switch halts fills.
        self.pre_trade: PreTradeCheck | None = None
        # Orders a kill switch kept from filling in this step (put back in the index).
        self._halted: set[str] = set()

    async def on_ticks(self, ticks: Mapping[str, Tick]) -> None:
        for symbol, tick in ticks.items():
            self._books.set_book(symbol, tick.book)
            if not self._index.count(symbol):
                continue
            # The makers draw on the venue's book of this step (set just above).
            events = self._index.on_ticker(tick.ticker, maker_fee_bps=ZERO)
            for event in events:
                try:
                    async with self._gate(uuid.UUID(event.order.account_id)):
                        if isinstance(event, RestingFill):
                            if not await self._apply_resting_fill(event) and event.taken:
                                # The order moved on (cancelled, filled elsewhere): the
                                # depth it would have taken is the market's again.
                                self._books.venue.give_back(event.taken)
                        else:
                            await self._apply_trigger(event)
                    if event.order.id in self._halted:
                        # The index moved it on; it did not trade: back as it is stored.
                        self._halted.discard(event.order.id)
                        await self.reindex(event.order.id)
                except Exception as error:
                    self.fill_errors += 1
                    log.exception("resting_order_failed", order_id=event.order.id)
                    if isinstance(event, RestingFill) and event.taken is not None:
                        self._books.venue.give_back(event.taken)  # it did not trade
                    await self._resync(event.order.id, error)

    async def _resync(self, order_id: str, error: Exception | None = None) -> None:
        """After a failed fill, put the order back in the index as the database has it;
        after the second failure of the same kind, cancel it with the reason instead
        (its lock released), so an order never fails on every tick with funds locked."""
        self._index.cancel(order_id)
        kind = type(error).__name__ if error is not None else "unknown"
        if self._failed.get(order_id) == kind:
            del self._failed[order_id]
            await self._close_failing(order_id, f"{kind}: {error}")
            return
        self._failed[order_id] = kind
        await self.reindex(order_id)

    async def reindex(self, order_id: str) -> None:
        """Put an order back in the index as the database has it, if it is open."""
        self._index.cancel(order_id)
        async with self._database.database.read() as session:
            row = await order_repo.get_by_id(session, uuid.UUID(order_id))
            if row is not None and row.status in {s.value for s in OPEN_ORDER_STATUSES}:
                self._index.add(engine_order(row))

    async def _close_failing(self, order_id: str, why: str) -> None:
        closed = await cancel_by_exchange(
            self._database.database,
            self._bus,
            uuid.UUID(order_id),
            lambda _order: f"cancelled by the exchange: its fill failed twice ({why})",
        )
        if closed is not None:
            log.error("failing_order_cancelled", order_id=order_id, reason=why)

    async def _fillable(
        self, session: AsyncSession, book: ledger.Book, order_id: str, filled_before: Decimal
    ) -> Order | None:
        """The order to fill, locked, or None: it moved on, or a kill switch halts its
        account (the switch cancels it; nothing of it fills first)."""
        if self.pre_trade is not None and await self.pre_trade.halted(session, book):
            self._halted.add(order_id)
            return None
        return await _open_order(session, order_id, filled_before)

    async def _apply_resting_fill(self, event: RestingFill) -> bool:
        """Book one maker fill; False when the order moved on and nothing was booked."""
        after, fill = event.order, event.fill
        with localcontext(MONEY_CONTEXT):
            filled_before = after.quantity - after.remaining - fill.quantity
        async with self._database.database.transaction() as session:
            # Account first, then the order: the lock order every path takes.
            book = await ledger.lock_book(session, uuid.UUID(after.account_id))
            order = await self._fillable(session, book, after.id, filled_before)
            if order is None:
                return False
            outbox = Outbox(order.user_id)
            rules = self._market.pair_rules(order.symbol)
            earlier = await trade_repo.of_order(session, order.id) if filled_before else []
            maker = price_fills(
                [make_fill(fill.price, fill.quantity, ZERO, Liquidity.MAKER)],
                self._fees.rates(book.account, rules),
                earlier,
            )
            now = utcnow()
            trades = await apply_fills(
                session, book, order, rules, maker, now, outbox, earlier=earlier
            )
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
        return True

    async def _apply_trigger(self, event: StopTriggered) -> None:
        converted = event.order
        with localcontext(MONEY_CONTEXT):
            filled_before = converted.quantity - converted.remaining
        rest: EngineOrder | None = None
        taken: Execution | None = None
        try:
            async with self._database.database.transaction() as session:
                book = await ledger.lock_book(session, uuid.UUID(converted.account_id))
                order = await self._fillable(session, book, converted.id, filled_before)
                if order is None:
                    return
                outbox = Outbox(order.user_id)
                rules = self._market.pair_rules(order.symbol)
                now = utcnow()
                order.triggered_at = now
                rates = self._fees.rates(book.account, rules)
                execution = self._books.take(converted, rates.taker_bps)
                taken = execution
                fills = price_fills(execution.fills, rates)
                buy = order.side == OrderSide.BUY.value
                asset = rules.quote_asset if buy else rules.base_asset
                resting = (
                    execution.order.remaining if execution.outcome is Outcome.RESTING else ZERO
                )
                rejected = False
                if buy:
                    with localcontext(MONEY_CONTEXT):
                        cost = sum((f.notional + f.fee for f in fills), ZERO)
                        shortfall = cost - order.locked_amount
                    held, free = order.locked_amount, book.free(asset)
                    if shortfall > free:
                        self._books.give_back(execution)  # nothing of it trades
                        taken = None
                        release(book, order, asset)
                        order.status = OrderStatus.REJECTED.value
                        order.closed_at = now
                        order.reject_reason = (
                            f"stop triggered at {event.last_price}: the fill would cost "
                            f"{cost} {asset}, more than the {held} held and the {free} free"
                        )
                        await ledger.write_balances(session, book)
                        announce(outbox, read_order(order, []), [])
                        rejected = True
                    elif shortfall > 0:
                        ledger.change_balance(book, asset, free=-shortfall, locked=shortfall)
                        order.locked_amount = order.locked_amount + shortfall
                if not rejected:
                    trades: list[Trade] = []
                    if fills:
                        trades = await apply_fills(session, book, order, rules, fills, now, outbox)
                    finish(order, execution, resting, now)
                    if resting:
                        if buy:
                            trim_lock(
                                book, order, asset, rates.highest_bps, execution.order, resting
                            )
                        rest = execution.order
                    else:
                        release(book, order, asset)
                    await ledger.write_balances(session, book)
                    announce(outbox, read_order(order, trades), trades)
        except BaseException:
            if taken is not None:  # the order did not trade: its depth is the market's
                self._books.give_back(taken)
            raise
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
