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
  fed by the market's ticks; a tick only touches the orders it crosses
  (services/paper_trading/fills.py). Open orders reload from the database at start.
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

All SQL is in database/repositories/ (orders, trades, positions, balances, accounts);
what placing and the tick-driven fills share is in services/paper_trading/booking.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import PairRules, Tick, Ticker
from core.config import Settings
from core.exceptions import ConflictError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from database.orm import OPEN_ORDER_STATUSES, Order, Trade, TradingAccount
from database.orm.types import utcnow
from database.repositories import orders as order_repo
from database.repositories import trades as trade_repo
from database.repositories.accounts import find_account
from database.repositories.orders import OrderListStatus
from models.base import Page
from models.enums import OrderSide, OrderStatus
from models.events import Channel, EventType
from models.trading import OrderCreate, OrderRead
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.paper_trading.booking import (
    STOPS,
    ZERO,
    AccountGates,
    MarketView,
    Outbox,
    TakerBooks,
    announce,
    apply_fills,
    buy_rest_reserve,
    engine_order,
    finish,
    log,
    publish,
    read_order,
    release,
    trim_lock,
)
from services.paper_trading.fills import TickFills
from services.paper_trading.matching import (
    MONEY_CONTEXT,
    Execution,
    OrderIndex,
    Outcome,
    stop_is_triggered,
    trigger_stop,
)
from services.paper_trading.matching import Order as EngineOrder
from services.paper_trading.rules import normalize_order

__all__ = ["MarketView", "OrderJournal", "OrderListStatus", "PaperTradingService"]

_CONFLICT_RETRIES = 3


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


@dataclass(frozen=True, slots=True)
class _Placement:
    """A new order as `place_order` prepared it: who places it where, the request, and
    what the market said when it was normalized."""

    user_id: uuid.UUID
    account_id: uuid.UUID
    request: OrderCreate
    symbol: str
    rules: PairRules
    ticker: Ticker
    draft: EngineOrder
    agent_id: uuid.UUID | None
    decision_id: uuid.UUID | None
    journal: OrderJournal | None


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
        self._books = TakerBooks(market)
        self._gate = AccountGates()
        self._fills = TickFills(database, market, event_bus, self._index, self._books, self._gate)
        self._default_accounts: dict[uuid.UUID, uuid.UUID] = {}
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def fills_applied(self) -> int:
        return self._fills.fills_applied

    @property
    def fill_errors(self) -> int:
        return self._fills.fill_errors

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
            orders = [engine_order(row) for row in await order_repo.open_orders(session)]
        self._index.reload(orders)
        log.info("open_orders_loaded", count=len(orders))
        return len(orders)

    # -- the market moves (services/paper_trading/fills.py) ------------------------

    async def on_ticks(self, ticks: Mapping[str, Tick]) -> None:
        await self._fills.on_ticks(ticks)

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
        placement = _Placement(
            user_id=user_id,
            account_id=account_id,
            request=request,
            symbol=symbol,
            rules=rules,
            ticker=ticker,
            draft=draft,
            agent_id=agent_id,
            decision_id=decision_id,
            journal=journal,
        )
        async with self._gate(account_id):
            try:
                return await self._place(placement)
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
            order = await order_repo.by_client_id(session, book.account.id, request.client_order_id)
            if order is None:
                raise ConflictError("the order could not be placed; retry")
            return await self._idempotent_reply(session, order, symbol, draft)

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
        return read_order(order, await trade_repo.of_order(session, order.id))

    async def _place(self, new: _Placement) -> OrderRead:
        client_order_id = new.request.client_order_id
        for attempt in range(_CONFLICT_RETRIES):
            outbox = Outbox(new.user_id)
            try:
                async with self._database.database.transaction() as session:
                    book = await ledger.lock_account(session, new.user_id, new.account_id)
                    if client_order_id is not None and new.journal is None:
                        existing = await order_repo.by_client_id(
                            session, book.account.id, client_order_id
                        )
                        if existing is not None:
                            return await self._idempotent_reply(
                                session, existing, new.symbol, new.draft
                            )
                    placed, rest = await self._execute_new(session, book, new, outbox)
            except ledger.LedgerConflictError:
                if attempt == _CONFLICT_RETRIES - 1:
                    raise
                continue
            if rest is not None:
                self._index.add(rest)
            await publish(self._bus, outbox)
            return placed
        raise AssertionError("unreachable")

    async def _execute_new(
        self,
        session: AsyncSession,
        book: ledger.Book,
        new: _Placement,
        outbox: Outbox,
    ) -> tuple[OrderRead, EngineOrder | None]:
        account = book.account
        request, symbol, rules, ticker, draft = (
            new.request, new.symbol, new.rules, new.ticker, new.draft
        )  # fmt: skip
        _check_account_takes(account, symbol, rules)
        now = utcnow()
        working = draft
        triggered_at: datetime | None = None
        if draft.order_type in STOPS and stop_is_triggered(draft, ticker.last):
            working, triggered_at = trigger_stop(draft), now
        execution: Execution | None = None
        if working.order_type not in STOPS:
            execution = self._books.take(working, account.taker_fee_bps)

        if execution is None:
            resting: Decimal = working.remaining
        elif execution.outcome is Outcome.RESTING:
            resting = execution.order.remaining
        else:
            resting = ZERO
        buy = draft.side is OrderSide.BUY
        lock_asset = rules.quote_asset if buy else rules.base_asset
        if buy:
            with localcontext(MONEY_CONTEXT):
                spent = (execution.notional + execution.fees) if execution else ZERO
                lock = spent + buy_rest_reserve(account, working, resting)
        else:
            lock = draft.quantity  # spot: the whole quantity must be held, whatever fills
        order = Order(
            id=uuid.UUID(draft.id),
            user_id=account.user_id,
            account_id=account.id,
            agent_id=new.agent_id,
            decision_id=new.decision_id,
            client_order_id=request.client_order_id,
            symbol=symbol,
            side=draft.side.value,
            order_type=draft.order_type.value,
            time_in_force=draft.time_in_force.value,
            quantity=draft.quantity,
            price=draft.limit_price,
            stop_price=draft.stop_price,
            status=OrderStatus.PENDING.value,
            filled_quantity=ZERO,
            fees=ZERO,
            locked_amount=ZERO,
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
        order_repo.add(session, order)  # a reused client_order_id fails at its INSERT
        ledger.change_balance(book, lock_asset, free=-lock, locked=lock)
        order.locked_amount = lock
        trades: list[Trade] = []
        if fills:
            trades = await apply_fills(
                session, book, order, rules, fills, now, outbox,
                earlier=[], position=position,
            )  # fmt: skip
        finish(order, execution, resting, now)
        if resting:
            if buy:
                trim_lock(book, order, lock_asset, account, working, resting)
        else:
            release(book, order, lock_asset)
        read = read_order(order, trades)
        if new.journal is not None:
            await new.journal.record(session, read)
        await ledger.write_balances(session, book)  # flushes all of it, in one go
        announce(outbox, read, trades)
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

    # -- reading and cancelling ----------------------------------------------------

    async def get_order(self, user_id: uuid.UUID, order_id: uuid.UUID) -> OrderRead:
        async with self._database.database.read() as session:
            order = await self._owned(session, user_id, order_id)
            return read_order(order, await trade_repo.of_order(session, order.id))

    @staticmethod
    async def _owned(
        session: AsyncSession, user_id: uuid.UUID, order_id: uuid.UUID, *, lock: bool = False
    ) -> Order:
        if lock:
            order = await order_repo.lock(session, order_id, user_id=user_id)
        else:
            order = await order_repo.find(session, order_id, user_id=user_id)
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
            release(book, order, asset)
            order.status = OrderStatus.CANCELLED.value
            order.closed_at = utcnow()
            order.reject_reason = "cancelled by the user"
            await ledger.write_balances(session, book)
            trades = await trade_repo.of_order(session, order.id)
            read = read_order(order, trades)
        self._index.cancel(str(order_id))
        outbox = Outbox(user_id)
        outbox.events.append(
            (Channel.TRADES, EventType.ORDER_CANCELLED, read.model_dump(mode="json"))
        )
        await publish(self._bus, outbox)
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
        resolved = self._market.resolve_symbol(symbol) if symbol is not None else None
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
            trades: dict[uuid.UUID, list[Trade]] = {row.id: [] for row in rows}
            if rows:
                for trade in await trade_repo.of_orders(session, list(trades)):
                    trades[trade.order_id].append(trade)
        return Page[OrderRead](
            items=[read_order(row, trades[row.id]) for row in rows],
            total=total,
            limit=limit,
            offset=offset,
        )
