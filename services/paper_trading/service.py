"""The paper exchange: orders against the simulated market's book, on a real ledger.

One order is one transaction: the account is held (row lock on PostgreSQL, `BEGIN
IMMEDIATE` on SQLite), what the order needs is moved from free to locked, the fills are
paid out of that lock, whatever does not rest is released, and the balances are written
once, compare-and-set (services/paper_trading/ledger.py). Events go out after the
commit. Within one process, the orders and fills of one account queue on an asyncio
semaphore (two at a time) before they ask for the row lock, so waiting orders hold no
database connection.

- Takers (market orders, crossing limits, triggered stops) walk the latest book from the
  touch; orders in the same market step share that book's liquidity, so two orders
  never take the same depth.
- Resting GTC limits and waiting stops live in an `OrderIndex` (price heaps per symbol)
  fed by the market's ticks; a tick only touches the orders it crosses. Open orders
  reload from the database at start.
- Fees: the account's maker and taker rates (bps), on every fill, kept on the trade.
- A buy locks its cost plus fees (for a resting limit at its limit price and the higher
  of the two fee rates; for a stop-market at its stop price plus STOP_BUY_BUFFER); a
  sell locks the base asset. Spot only: nothing is sold that the account does not hold.
- `client_order_id` is unique per account: the same id and parameters return the first
  order (no second fill); other parameters are a 409 naming the differences. Retries
  racing the first wait for it (the account's turn in-process; across processes the
  unique key).
- Every fill is applied with a compare-and-set on the order's filled quantity, so a
  cancel racing a fill, or a second instance matching the same order, can never fill
  it twice.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, Literal, Protocol, TypeVar

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import BookLevel, OrderBook, PairRules, Tick, Ticker
from core.config import Settings
from core.exceptions import ConflictError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from database.orm import OPEN_ORDER_STATUSES, Order, Position, Trade, TradingAccount
from database.orm.types import strip_zeros, utcnow
from database.repositories.accounts import find_account
from models.base import AppModel, Page, decimal_to_str
from models.enums import Liquidity, OrderSide, OrderStatus, OrderType, TimeInForce
from models.events import Channel, EventType
from models.trading import FillRead, OrderCreate, OrderRead
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.paper_trading.matching import (
    MONEY_CONTEXT,
    BookWalk,
    Execution,
    Fill,
    OrderIndex,
    Outcome,
    RestingFill,
    StopTriggered,
    consume,
    execute,
    fee_for,
    make_fill,
    stop_is_triggered,
    trigger_stop,
)
from services.paper_trading.matching import Order as EngineOrder
from services.paper_trading.rules import normalize_order

log = structlog.get_logger(__name__)
ModelT = TypeVar("ModelT", bound=AppModel)

_ZERO = Decimal(0)
# A stop-market buy executes at whatever the book offers once triggered: it locks its
# stop price plus this margin, and is rejected at trigger if the fill would cost more
# than the lock and the free cash together.
STOP_BUY_BUFFER = Decimal("0.05")
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
_CONFLICT_RETRIES = 3
# Orders of one account in flight at once in this process (see `_gate`).
_ORDERS_IN_FLIGHT = 2

OrderListStatus = Literal["open", "closed", "filled", "cancelled", "rejected", "partial", "pending"]


class MarketView(Protocol):
    """What the paper exchange needs of the market data service."""

    def resolve_symbol(self, raw: str) -> str: ...
    def pair_rules(self, symbol: str) -> PairRules: ...
    def ticker(self, symbol: str) -> Ticker: ...
    def order_book(self, symbol: str, depth: int = 20) -> OrderBook: ...
    def add_tick_listener(
        self, listener: Callable[[Mapping[str, Tick]], Awaitable[None]]
    ) -> Callable[[], None]: ...


class OrderJournal(Protocol):
    """Rows a caller writes in a new order's own transaction, such as the agent
    decision behind it: if the order fails, they roll back with it.

    `record` is called once the order's outcome is known, before anything of the
    order is written, so what it adds goes out in the same flush with its final
    values (an order's relationships put what it references first). An order with a
    journal is new by construction (its decision is new): its client_order_id is not
    looked up before it is placed; a repeat would still fail at its INSERT and be
    answered as a repeat."""

    async def record(self, session: AsyncSession, order: OrderRead) -> None: ...


@dataclass(slots=True)
class _Outbox:
    """Events of one transaction, published once it has committed."""

    user_id: uuid.UUID
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def _canonical(model: ModelT) -> ModelT:
    """Amounts as the database hands them back (no trailing zeros), so an order reads
    the same in the reply that placed it and in every later GET."""
    for name, value in model:
        if isinstance(value, Decimal):
            setattr(model, name, strip_zeros(value))
    return model


def _fill_of(trade: Trade) -> FillRead:
    return _canonical(FillRead.model_validate(trade))


def _read(order: Order, trades: list[Trade]) -> OrderRead:
    read = _canonical(OrderRead.model_validate(order))
    read.fills = [_fill_of(t) for t in sorted(trades, key=lambda t: t.executed_at)]
    return read


def _check_account_takes(account: TradingAccount, symbol: str, rules: PairRules) -> None:
    """Refuses an order the account cannot hold: another quote currency, or closed."""
    if account.base_currency != rules.quote_asset:
        raise ValidationFailedError(
            f"{symbol} is quoted in {rules.quote_asset}; this account holds "
            f"{account.base_currency}",
            details={"symbol": symbol, "account_currency": account.base_currency},
        )
    if not account.is_active:
        raise ValidationFailedError(
            "this account is not active", details={"account_id": str(account.id)}
        )


def _walk_of(execution: Execution) -> BookWalk:
    levels = tuple(BookLevel(f.price, f.quantity) for f in execution.fills)
    return BookWalk(
        levels, execution.filled_quantity, execution.order.remaining, execution.notional
    )


def _buy_reserve(quantity: Decimal, price: Decimal, fee_bps: Decimal) -> Decimal:
    with localcontext(MONEY_CONTEXT):
        notional = quantity * price
        return notional + fee_for(notional, fee_bps)


def _same_request(order: Order, symbol: str, draft: EngineOrder) -> list[str]:
    """The parameters in which a retried client_order_id differs from the first order."""
    differences = []
    if order.symbol != symbol:
        differences.append("symbol")
    if order.side != draft.side.value:
        differences.append("side")
    if order.order_type != draft.order_type.value:
        differences.append("order_type")
    if order.time_in_force != draft.time_in_force.value:
        differences.append("time_in_force")
    if order.quantity != draft.quantity:
        differences.append("quantity")
    if order.price != draft.limit_price:
        differences.append("price")
    if order.stop_price != draft.stop_price:
        differences.append("stop_price")
    return differences


class PaperTradingService:
    def __init__(
        self,
        database: DatabaseService,
        market: MarketView,
        event_bus: EventBus,
        settings: Settings,
    ) -> None:
        self._database = database
        self._market = market
        self._bus = event_bus
        self._settings = settings
        self._index = OrderIndex()
        # The book takers see: the latest market step's, minus what orders took from it.
        self._books: dict[str, OrderBook] = {}
        self._gates: weakref.WeakValueDictionary[uuid.UUID, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )
        self._default_accounts: dict[uuid.UUID, uuid.UUID] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self.fills_applied = 0
        self.fill_errors = 0

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.reload_open_orders()
        self._unsubscribe = self._market.add_tick_listener(self.on_ticks)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy(
            f"{len(self._index)} open orders in the matching index",
            open_orders=len(self._index),
            fills_applied=self.fills_applied,
            fill_errors=self.fill_errors,
        )

    async def reload_open_orders(self) -> int:
        """Rebuild the matching index from the database (oldest first: time priority)."""
        async with self._database.database.read() as session:
            rows = (
                await session.execute(
                    select(Order)
                    .where(Order.status.in_([s.value for s in OPEN_ORDER_STATUSES]))
                    .order_by(Order.created_at, Order.id)
                )
            ).scalars()
            orders = [self._engine_order(row) for row in rows]
        self._index.reload(orders)
        log.info("open_orders_loaded", count=len(orders))
        return len(orders)

    @staticmethod
    def _engine_order(row: Order) -> EngineOrder:
        order_type = OrderType(row.order_type)
        if row.triggered_at is not None and order_type is OrderType.STOP_LIMIT:
            order_type = OrderType.LIMIT  # a triggered stop-limit rests as its limit
        return EngineOrder(
            id=str(row.id),
            account_id=str(row.account_id),
            symbol=row.symbol,
            side=OrderSide(row.side),
            order_type=order_type,
            time_in_force=TimeInForce(row.time_in_force),
            quantity=row.quantity,
            remaining=row.quantity - row.filled_quantity,
            limit_price=row.price,
            stop_price=row.stop_price if order_type in _STOPS else None,
        )

    # -- placing -------------------------------------------------------------------

    async def place_order(
        self,
        user_id: uuid.UUID,
        request: OrderCreate,
        *,
        agent_id: uuid.UUID | None = None,
        decision_id: uuid.UUID | None = None,
        journal: OrderJournal | None = None,
    ) -> OrderRead:
        """Place, execute what crosses, rest the rest; raises NotFoundError (symbol,
        account), RuleViolation (pair rules), InsufficientFundsError, ConflictError
        (client_order_id reused with other parameters). A `journal` writes its rows in
        the order's transaction (not on an idempotent replay of an earlier order)."""
        symbol = self._market.resolve_symbol(request.symbol)
        rules = self._market.pair_rules(symbol)
        ticker = self._market.ticker(symbol)
        draft = normalize_order(
            EngineOrder(
                id=str(uuid.uuid4()),
                account_id="",
                symbol=symbol,
                side=request.side,
                order_type=request.order_type,
                time_in_force=request.time_in_force,
                quantity=request.quantity,
                remaining=request.quantity,
                limit_price=request.price,
                stop_price=request.stop_price,
            ),
            rules,
            bid=ticker.bid,
            ask=ticker.ask,
        )
        account_id = await self._account_id(user_id, request.account_id)
        async with self._gate(account_id):
            try:
                return await self._place(
                    user_id, account_id, request, symbol, rules, ticker, draft, agent_id,
                    decision_id, journal,
                )  # fmt: skip
            except IntegrityError:
                if request.client_order_id is None:
                    raise
                # Another instance placed the same client_order_id first.
                return await self._existing(user_id, account_id, request, symbol, draft)

    async def _account_id(self, user_id: uuid.UUID, account_id: uuid.UUID | None) -> uuid.UUID:
        """The account an order goes to: the one named, or the user's default (looked up
        once: a user's default account never changes)."""
        if account_id is not None:
            return account_id
        default = self._default_accounts.get(user_id)
        if default is None:
            async with self._database.database.read() as session:
                default = (await find_account(session, user_id, None)).id
            self._default_accounts[user_id] = default
        return default

    def _gate(self, account_id: uuid.UUID) -> asyncio.Semaphore:
        """Orders and fills of one account queue in this process before they ask for the
        account's row lock: waiting coroutines instead of idle connections. Two pass at
        a time: one holds the row lock while the next, its connection checked out and
        its transaction begun, waits on it in the database, which hands it over the
        moment the first commits. The row lock is what orders them, here and across
        processes."""
        gate = self._gates.get(account_id)
        if gate is None:
            gate = self._gates[account_id] = asyncio.Semaphore(_ORDERS_IN_FLIGHT)
        return gate

    async def _existing(
        self,
        user_id: uuid.UUID,
        account_id: uuid.UUID,
        request: OrderCreate,
        symbol: str,
        draft: EngineOrder,
    ) -> OrderRead:
        async with self._database.database.read() as session:
            book = await ledger.lock_account(session, user_id, account_id)
            order = await self._by_client_id(session, book.account.id, request.client_order_id)
            if order is None:
                raise ConflictError("the order could not be placed; retry")
            return await self._idempotent_reply(session, order, symbol, draft)

    @staticmethod
    async def _by_client_id(
        session: AsyncSession, account_id: uuid.UUID, client_order_id: str | None
    ) -> Order | None:
        query = select(Order).where(
            Order.account_id == account_id, Order.client_order_id == client_order_id
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def _idempotent_reply(
        self,
        session: AsyncSession,
        order: Order,
        symbol: str,
        draft: EngineOrder,
    ) -> OrderRead:
        differences = _same_request(order, symbol, draft)
        if differences:
            raise ConflictError(
                f"client_order_id {order.client_order_id!r} was used for another order "
                f"(different {', '.join(differences)})",
                details={
                    "client_order_id": order.client_order_id,
                    "order_id": str(order.id),
                    "differences": differences,
                },
            )
        return _read(order, await self._trades_of(session, order.id))

    async def _place(
        self,
        user_id: uuid.UUID,
        account_id: uuid.UUID,
        request: OrderCreate,
        symbol: str,
        rules: PairRules,
        ticker: Ticker,
        draft: EngineOrder,
        agent_id: uuid.UUID | None,
        decision_id: uuid.UUID | None,
        journal: OrderJournal | None,
    ) -> OrderRead:
        for attempt in range(_CONFLICT_RETRIES):
            outbox = _Outbox(user_id)
            try:
                async with self._database.database.transaction() as session:
                    book = await ledger.lock_account(session, user_id, account_id)
                    if request.client_order_id is not None and journal is None:
                        existing = await self._by_client_id(
                            session, book.account.id, request.client_order_id
                        )
                        if existing is not None:
                            return await self._idempotent_reply(session, existing, symbol, draft)
                    placed, rest = await self._execute_new(
                        session,
                        book,
                        request,
                        symbol,
                        rules,
                        ticker,
                        draft,
                        agent_id,
                        decision_id,
                        outbox,
                        journal,
                    )
            except ledger.LedgerConflictError:
                if attempt == _CONFLICT_RETRIES - 1:
                    raise
                continue
            if rest is not None:
                self._index.add(rest)
            await self._publish(outbox)
            return placed
        raise AssertionError("unreachable")

    def _take(self, order: EngineOrder, taker_fee_bps: Decimal) -> Execution:
        """Execute against the current book and take the liquidity at once (no await in
        between, so concurrent orders never take the same depth). If the order's
        transaction then fails, that depth stays gone until the next market step:
        conservative, never double-counted."""
        execution = execute(order, self._book(order.symbol), taker_fee_bps=taker_fee_bps)
        if execution.fills:
            self._books[order.symbol] = consume(
                self._book(order.symbol), order.side, _walk_of(execution)
            )
        return execution

    def _book(self, symbol: str) -> OrderBook:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = self._market.order_book(symbol, depth=100)
        return book

    async def _execute_new(
        self,
        session: AsyncSession,
        book: ledger.Book,
        request: OrderCreate,
        symbol: str,
        rules: PairRules,
        ticker: Ticker,
        draft: EngineOrder,
        agent_id: uuid.UUID | None,
        decision_id: uuid.UUID | None,
        outbox: _Outbox,
        journal: OrderJournal | None,
    ) -> tuple[OrderRead, EngineOrder | None]:
        account = book.account
        _check_account_takes(account, symbol, rules)
        now = utcnow()
        working = draft
        triggered_at: datetime | None = None
        if draft.order_type in _STOPS and stop_is_triggered(draft, ticker.last):
            working, triggered_at = trigger_stop(draft), now
        execution: Execution | None = None
        if working.order_type not in _STOPS:
            execution = self._take(working, account.taker_fee_bps)

        if execution is None:
            resting: Decimal = working.remaining
        elif execution.outcome is Outcome.RESTING:
            resting = execution.order.remaining
        else:
            resting = _ZERO
        buy = draft.side is OrderSide.BUY
        lock_asset = rules.quote_asset if buy else rules.base_asset
        if buy:
            with localcontext(MONEY_CONTEXT):
                spent = (execution.notional + execution.fees) if execution else _ZERO
                lock = spent + self._buy_rest_reserve(account, working, resting)
        else:
            lock = draft.quantity  # spot: the whole quantity must be held, whatever fills
        order = Order(
            id=uuid.UUID(draft.id),
            user_id=account.user_id,
            account_id=account.id,
            agent_id=agent_id,
            decision_id=decision_id,
            client_order_id=request.client_order_id,
            symbol=symbol,
            side=draft.side.value,
            order_type=draft.order_type.value,
            time_in_force=draft.time_in_force.value,
            quantity=draft.quantity,
            price=draft.limit_price,
            stop_price=draft.stop_price,
            status=OrderStatus.PENDING.value,
            filled_quantity=_ZERO,
            fees=_ZERO,
            locked_amount=_ZERO,
            strategy=request.strategy,
            reasoning=request.reasoning,
            market_data={
                "bid": str(ticker.bid),
                "ask": str(ticker.ask),
                "last": str(ticker.last),
                "at": ticker.timestamp.isoformat(),
            },
            triggered_at=triggered_at,
            # Set here, not at the INSERT: the reply is read before anything is written.
            created_at=now,
            updated_at=now,
        )
        # Read before the order is added, so the order's INSERT goes out with its final
        # values in the one flush at the end (write_balances).
        fills = execution.fills if execution is not None else ()
        position = await ledger.position_of(session, account, symbol) if fills else None
        session.add(order)  # a reused client_order_id fails at its INSERT (IntegrityError)
        ledger.change_balance(book, lock_asset, free=-lock, locked=lock)
        order.locked_amount = lock
        trades: list[Trade] = []
        if fills:
            trades = await self._apply_fills(
                session, book, order, rules, fills, now, outbox,
                earlier=[], position=position,
            )  # fmt: skip
        self._finish(order, execution, resting, now)
        if resting:
            if buy:
                self._trim_lock(book, order, lock_asset, account, working, resting)
        else:
            self._release(book, order, lock_asset)
        read = _read(order, trades)
        if journal is not None:
            await journal.record(session, read)
        await ledger.write_balances(session, book)  # flushes all of it, in one go
        self._announce(outbox, read, trades)
        rest = None
        if resting:
            rest = EngineOrder(
                id=str(order.id),
                account_id=str(account.id),
                symbol=symbol,
                side=working.side,
                order_type=working.order_type,
                time_in_force=working.time_in_force,
                quantity=working.quantity,
                remaining=resting,
                limit_price=working.limit_price,
                stop_price=working.stop_price,
            )
        return read, rest

    @staticmethod
    def _buy_rest_reserve(account: Any, working: EngineOrder, resting: Decimal) -> Decimal:
        if not resting:
            return _ZERO
        fee_bps = max(account.maker_fee_bps, account.taker_fee_bps)
        if working.limit_price is not None:
            return _buy_reserve(resting, working.limit_price, fee_bps)
        if working.stop_price is None:
            raise ValueError(f"order {working.id} has neither a limit nor a stop price")
        with localcontext(MONEY_CONTEXT):
            price = working.stop_price * (1 + STOP_BUY_BUFFER)
        return _buy_reserve(resting, price, fee_bps)

    def _trim_lock(
        self,
        book: ledger.Book,
        order: Order,
        asset: str,
        account: Any,
        working: EngineOrder,
        resting: Decimal,
    ) -> None:
        """Keep exactly the reserve of the resting part locked; free the rest."""
        excess = order.locked_amount - self._buy_rest_reserve(account, working, resting)
        if excess > 0:
            ledger.change_balance(book, asset, free=excess, locked=-excess)
            order.locked_amount = order.locked_amount - excess

    @staticmethod
    def _release(book: ledger.Book, order: Order, asset: str) -> None:
        left = order.locked_amount
        if left > 0:
            ledger.change_balance(book, asset, free=left, locked=-left)
        order.locked_amount = _ZERO

    async def _apply_fills(
        self,
        session: AsyncSession,
        book: ledger.Book,
        order: Order,
        rules: PairRules,
        fills: tuple[Fill, ...] | list[Fill],
        now: datetime,
        outbox: _Outbox,
        *,
        earlier: list[Trade] | None = None,
        position: Position | None = None,
    ) -> list[Trade]:
        """Pay each fill out of the order's lock and book it; returns all the order's
        trades (`earlier`: those it had, read from the database when not given)."""
        if earlier is None:
            earlier = await self._trades_of(session, order.id) if order.filled_quantity else []
        side = OrderSide(order.side)
        if position is None:
            position = await ledger.position_of(session, book.account, order.symbol)
        trades = []
        for fill in fills:
            with localcontext(MONEY_CONTEXT):
                due = fill.notional + fill.fee if side is OrderSide.BUY else fill.quantity
                from_lock = min(due, order.locked_amount)
            booked = ledger.book_fill(
                session,
                book,
                position,
                order_id=order.id,
                side=side,
                fill=fill,
                base_asset=rules.base_asset,
                quote_asset=rules.quote_asset,
                executed_at=now,
                cash_from_lock=from_lock if side is OrderSide.BUY else _ZERO,
                base_from_lock=from_lock if side is OrderSide.SELL else _ZERO,
            )
            order.locked_amount = order.locked_amount - from_lock
            order.filled_quantity = order.filled_quantity + fill.quantity
            order.fees = order.fees + fill.fee
            trades.append(booked.trade)
        all_trades = earlier + trades
        with localcontext(MONEY_CONTEXT):
            notional = sum((t.price * t.quantity for t in all_trades), _ZERO)
            order.average_price = (
                ledger.stored(notional / order.filled_quantity) if order.filled_quantity else None
            )
        outbox.events.append(
            (
                Channel.PORTFOLIO,
                EventType.PORTFOLIO_UPDATE,
                {
                    "kind": "fill",
                    "account_id": str(book.account.id),
                    "symbol": order.symbol,
                    "position_quantity": decimal_to_str(position.quantity),
                    "cash": decimal_to_str(
                        book.free(rules.quote_asset) + book.locked(rules.quote_asset)
                    ),
                    "realized_pnl": decimal_to_str(book.account.realized_pnl),
                },
            )
        )
        return all_trades

    @staticmethod
    def _finish(order: Order, execution: Execution | None, resting: Decimal, now: datetime) -> None:
        if resting:
            order.status = (
                OrderStatus.PARTIAL.value if order.filled_quantity else OrderStatus.PENDING.value
            )
            return
        if execution is None:
            raise ValueError(f"order {order.id} neither rests nor executed")
        order.closed_at = now
        if execution.outcome is Outcome.FILLED:
            order.status = OrderStatus.FILLED.value
        elif execution.outcome is Outcome.REJECTED:
            order.status = OrderStatus.REJECTED.value
            order.reject_reason = "fill or kill: the book could not fill the whole quantity" + (
                " within the limit" if order.price is not None else ""
            )
        elif not order.filled_quantity:
            order.status = OrderStatus.REJECTED.value
            order.reject_reason = "no liquidity" + (
                " within the limit" if order.price is not None else " in the book"
            )
        else:
            order.status = OrderStatus.CANCELLED.value
            order.reject_reason = (
                f"{order.filled_quantity} of {order.quantity} filled; the rest was cancelled "
                f"({'immediate or cancel' if order.time_in_force == 'IOC' else 'book exhausted'})"
            )

    @staticmethod
    async def _trades_of(session: AsyncSession, order_id: uuid.UUID) -> list[Trade]:
        query = select(Trade).where(Trade.order_id == order_id).order_by(Trade.executed_at)
        return list((await session.execute(query)).scalars())

    def _announce(self, outbox: _Outbox, order: OrderRead, trades: list[Trade]) -> None:
        data = order.model_dump(mode="json", exclude={"fills"})
        data["fills"] = [_fill_of(t).model_dump(mode="json") for t in trades]
        outbox.events.append((Channel.TRADES, EventType.TRADE_EXECUTION, data))

    async def _publish(self, outbox: _Outbox) -> None:
        for channel, event_type, data in outbox.events:
            try:
                await self._bus.publish(channel, event_type, data, user_id=outbox.user_id)
            except Exception:  # the ledger has committed; a lost event is logged, not raised
                log.exception("event_publish_failed", channel=channel, event_type=event_type)

    # -- the market moves ----------------------------------------------------------

    async def on_ticks(self, ticks: Mapping[str, Tick]) -> None:
        for symbol, tick in ticks.items():
            self._books[symbol] = tick.book
            if not self._index.count(symbol):
                continue
            events = self._index.on_ticker(tick.ticker, maker_fee_bps=_ZERO, book=tick.book)
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
            row = await session.get(Order, uuid.UUID(order_id))
            if row is not None and row.status in {s.value for s in OPEN_ORDER_STATUSES}:
                self._index.add(self._engine_order(row))

    async def _apply_resting_fill(self, event: RestingFill) -> None:
        after, fill = event.order, event.fill
        with localcontext(MONEY_CONTEXT):
            filled_before = after.quantity - after.remaining - fill.quantity
        async with self._database.database.transaction() as session:
            # Account first, then the order: the lock order every path takes.
            book = await ledger.lock_book(session, uuid.UUID(after.account_id))
            order = await self._open_order(session, after.id, filled_before)
            if order is None:
                return
            outbox = _Outbox(order.user_id)
            rules = self._market.pair_rules(order.symbol)
            maker = make_fill(
                fill.price, fill.quantity, book.account.maker_fee_bps, Liquidity.MAKER
            )
            now = utcnow()
            trades = await self._apply_fills(session, book, order, rules, [maker], now, outbox)
            if after.remaining:
                order.status = OrderStatus.PARTIAL.value
            else:
                order.status = OrderStatus.FILLED.value
                order.closed_at = now
                asset = rules.quote_asset if order.side == OrderSide.BUY.value else rules.base_asset
                self._release(book, order, asset)
            await ledger.write_balances(session, book)
            self._announce(outbox, _read(order, trades), trades)
        self.fills_applied += 1
        await self._publish(outbox)

    async def _apply_trigger(self, event: StopTriggered) -> None:
        converted = event.order
        with localcontext(MONEY_CONTEXT):
            filled_before = converted.quantity - converted.remaining
        rest: EngineOrder | None = None
        async with self._database.database.transaction() as session:
            book = await ledger.lock_book(session, uuid.UUID(converted.account_id))
            order = await self._open_order(session, converted.id, filled_before)
            if order is None:
                return
            outbox = _Outbox(order.user_id)
            rules = self._market.pair_rules(order.symbol)
            now = utcnow()
            order.triggered_at = now
            account = book.account
            execution = self._take(converted, account.taker_fee_bps)
            buy = order.side == OrderSide.BUY.value
            asset = rules.quote_asset if buy else rules.base_asset
            resting = execution.order.remaining if execution.outcome is Outcome.RESTING else _ZERO
            rejected = False
            if buy:
                with localcontext(MONEY_CONTEXT):
                    shortfall = execution.notional + execution.fees - order.locked_amount
                if shortfall > book.free(asset):
                    self._release(book, order, asset)
                    order.status = OrderStatus.REJECTED.value
                    order.closed_at = now
                    order.reject_reason = (
                        f"stop triggered at {event.last_price}: the fill would cost "
                        f"{execution.notional + execution.fees} {asset}, more than the "
                        f"{order.locked_amount} held and the {book.free(asset)} free"
                    )
                    await ledger.write_balances(session, book)
                    self._announce(outbox, _read(order, []), [])
                    rejected = True
                elif shortfall > 0:
                    ledger.change_balance(book, asset, free=-shortfall, locked=shortfall)
                    order.locked_amount = order.locked_amount + shortfall
            if not rejected:
                trades: list[Trade] = []
                if execution.fills:
                    trades = await self._apply_fills(
                        session, book, order, rules, execution.fills, now, outbox
                    )
                self._finish(order, execution, resting, now)
                if resting:
                    if buy:
                        self._trim_lock(book, order, asset, account, execution.order, resting)
                    rest = execution.order
                else:
                    self._release(book, order, asset)
                await ledger.write_balances(session, book)
                self._announce(outbox, _read(order, trades), trades)
        if rest is not None:
            self._index.add(rest)
        await self._publish(outbox)

    @staticmethod
    async def _open_order(
        session: AsyncSession, order_id: str, filled_before: Decimal
    ) -> Order | None:
        """The order if it is still open with exactly `filled_before` filled (the fill we
        are about to apply was computed from that state); None if it moved on."""
        query = (
            select(Order)
            .where(Order.id == uuid.UUID(order_id))
            .execution_options(populate_existing=True)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        order = (await session.execute(query)).scalar_one_or_none()
        if order is None or order.status not in {s.value for s in OPEN_ORDER_STATUSES}:
            return None
        if order.filled_quantity != filled_before:
            return None
        return order

    # -- reading and cancelling ----------------------------------------------------

    async def get_order(self, user_id: uuid.UUID, order_id: uuid.UUID) -> OrderRead:
        async with self._database.database.read() as session:
            order = await self._owned(session, user_id, order_id)
            return _read(order, await self._trades_of(session, order.id))

    @staticmethod
    async def _owned(
        session: AsyncSession, user_id: uuid.UUID, order_id: uuid.UUID, *, lock: bool = False
    ) -> Order:
        query = select(Order).where(Order.id == order_id, Order.user_id == user_id)
        if lock:
            query = query.execution_options(populate_existing=True)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update()
        order = (await session.execute(query)).scalar_one_or_none()
        if order is None:
            raise NotFoundError(f"order {order_id} not found", details={"order_id": str(order_id)})
        return order

    async def cancel_order(self, user_id: uuid.UUID, order_id: uuid.UUID) -> OrderRead:
        """Cancel an open order and release what it held; 409 when it is already closed."""
        async with self._database.database.transaction() as session:
            order = await self._owned(session, user_id, order_id)
            # Account first, then the order (re-read under the lock): as every path does.
            book = await ledger.lock_book(session, order.account_id)
            order = await self._owned(session, user_id, order_id, lock=True)
            if order.status not in {s.value for s in OPEN_ORDER_STATUSES}:
                raise ConflictError(
                    f"order {order_id} is {order.status} and cannot be cancelled",
                    details={"order_id": str(order_id), "status": order.status},
                )
            rules = self._market.pair_rules(order.symbol)
            asset = rules.quote_asset if order.side == OrderSide.BUY.value else rules.base_asset
            self._release(book, order, asset)
            order.status = OrderStatus.CANCELLED.value
            order.closed_at = utcnow()
            order.reject_reason = "cancelled by the user"
            await ledger.write_balances(session, book)
            trades = await self._trades_of(session, order.id)
            read = _read(order, trades)
        self._index.cancel(str(order_id))
        outbox = _Outbox(user_id)
        outbox.events.append(
            (Channel.TRADES, EventType.ORDER_CANCELLED, read.model_dump(mode="json"))
        )
        await self._publish(outbox)
        return read

    async def list_orders(
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
        """The user's orders newest first, each with its fills."""
        query = select(Order).where(Order.user_id == user_id)
        if account_id is not None:
            query = query.where(Order.account_id == account_id)
        if status == "open":
            query = query.where(Order.status.in_([s.value for s in OPEN_ORDER_STATUSES]))
        elif status == "closed":
            query = query.where(Order.status.not_in([s.value for s in OPEN_ORDER_STATUSES]))
        elif status is not None:
            query = query.where(Order.status == status)
        if symbol is not None:
            query = query.where(Order.symbol == self._market.resolve_symbol(symbol))
        if side is not None:
            query = query.where(Order.side == side.value)
        if agent_id is not None:
            query = query.where(Order.agent_id == agent_id)
        if start is not None:
            query = query.where(Order.created_at >= start)
        if end is not None:
            query = query.where(Order.created_at < end)
        async with self._database.database.read() as session:
            total = (
                await session.execute(select(func.count()).select_from(query.subquery()))
            ).scalar_one()
            rows = list(
                (
                    await session.execute(
                        query.order_by(Order.created_at.desc(), Order.id.desc())
                        .limit(limit)
                        .offset(offset)
                    )
                ).scalars()
            )
            trades: dict[uuid.UUID, list[Trade]] = {row.id: [] for row in rows}
            if rows:
                fills = await session.execute(select(Trade).where(Trade.order_id.in_(list(trades))))
                for trade in fills.scalars():
                    trades[trade.order_id].append(trade)
        return Page[OrderRead](
            items=[_read(row, trades[row.id]) for row in rows],
            total=total,
            limit=limit,
            offset=offset,
        )
