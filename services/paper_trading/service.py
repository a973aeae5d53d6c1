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
- Fees: the pair's schedule, the account's override, or the PAPER_* default
  (services/paper_trading/fees.py), on every fill, kept on the trade; an order's fees
  of one kind are those of its cumulative notional (booking.price_fills).
- A buy locks its cost plus fees (for a resting limit at its limit price and the higher
  of the two fee rates; for a stop-market at its stop price plus STOP_BUY_BUFFER); a
  sell locks the base asset. Spot only: nothing is sold that the account does not hold.
- A refused order (funds, a rolled-back transaction, a conflict retried) gives the depth
  it took back to the book before anything else can trade it.
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

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import OrderBook, Tick
from core.config import Settings
from core.exceptions import ConflictError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from database.orm import OPEN_ORDER_STATUSES, Order
from database.orm.types import utcnow
from database.repositories import orders as order_repo
from database.repositories import trades as trade_repo
from database.repositories.accounts import find_account
from database.repositories.orders import OrderListStatus
from models.events import Channel, EventType
from models.trading import OrderCreate, OrderRead, OrderReplace
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.paper_trading.activity import PaperActivity
from services.paper_trading.booking import (
    AccountGates,
    MarketView,
    Outbox,
    TakerBooks,
    cancel_by_exchange,
    cancel_in_book,
    engine_order,
    log,
    publish,
    read_order,
)
from services.paper_trading.fees import FeeSchedule
from services.paper_trading.fills import TickFills
from services.paper_trading.liquidity import Venue
from services.paper_trading.matching import (
    Execution,
    OrderIndex,
)
from services.paper_trading.matching import Order as EngineOrder
from services.paper_trading.placing import (
    OrderJournal,
    Placement,
    PreTradeCheck,
    draft_of,
    execute_new,
    replaced_request,
    same_request,
)

__all__ = ["MarketView", "OrderJournal", "OrderListStatus", "PaperTradingService"]

_CONFLICT_RETRIES = 3


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
        # One venue book per symbol, shared by takers and makers (liquidity.py).
        venue = Venue(recovery=settings.paper.book_recovery)
        self._index = OrderIndex(venue)
        self._fees = FeeSchedule(settings.paper.maker_fee_bps, settings.paper.taker_fee_bps)
        self._books = TakerBooks(market, venue=venue)
        self._gate = AccountGates()
        self._fills = TickFills(
            database, market, event_bus, self._index, self._books, self._gate, fees=self._fees
        )
        self._default_accounts: dict[uuid.UUID, uuid.UUID] = {}
        # The read side (lists of orders and fills); the routers use it too.
        self.activity = PaperActivity(database, market)
        # What "now" is for expiry: DAY and GTD orders (tests move it).
        self._clock: Callable[[], datetime] = utcnow
        # PAPER_ORDER_LATENCY_MS, in seconds, and how it is waited (tests gate it).
        self._latency = settings.paper.order_latency_ms / 1000
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._unsubscribe: Callable[[], None] | None = None
        self._pre_trade: PreTradeCheck | None = None

    @property
    def pre_trade(self) -> PreTradeCheck | None:
        """The risk check every new order and every resting fill passes."""
        return self._pre_trade

    @pre_trade.setter
    def pre_trade(self, check: PreTradeCheck | None) -> None:
        self._pre_trade = check
        self._fills.pre_trade = check

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

    def forget_orders(self, order_ids: Iterable[str]) -> None:
        """Drop orders from the matching index: another part of the exchange closed
        them in its own transaction (an account reset), after it committed."""
        for order_id in order_ids:
            self._index.cancel(order_id)

    def taker_book(self, symbol: str) -> OrderBook:
        """The book the next taker order in `symbol` walks: the market's latest, as paper
        orders have left it."""
        return self._books.book(self._market.resolve_symbol(symbol))

    # -- the market moves (services/paper_trading/fills.py) ------------------------

    async def on_ticks(self, ticks: Mapping[str, Tick]) -> None:
        await self._fills.on_ticks(ticks)
        await self.expire_orders()

    async def expire_orders(self) -> int:
        """Cancel the DAY and GTD orders whose time has come, releasing their locks;
        runs after every market step. Returns how many expired."""
        expired = self._index.expire(self._clock())
        for engine in expired:
            try:
                await self._expire(uuid.UUID(engine.id))
            except Exception:
                log.exception("order_expiry_failed", order_id=engine.id)
                # Back into the index as the database has it: the next step retries.
                await self._fills.reindex(engine.id)
        return len(expired)

    async def _expire(self, order_id: uuid.UUID) -> None:
        def reason(order: Order) -> str:
            expiry = order.expires_at.isoformat() if order.expires_at else "its expiry"
            return f"expired ({order.time_in_force}) at {expiry}"

        await cancel_by_exchange(self._database.database, self._bus, order_id, reason)

    # -- placing -------------------------------------------------------------------

    async def place_order(
        self,
        user_id: uuid.UUID,
        request: OrderCreate,
        *,
        agent_id: uuid.UUID | None = None,
        decision_id: uuid.UUID | None = None,
        journal: OrderJournal | None = None,
        flatten: bool = False,
    ) -> OrderRead:
        """Place, execute what crosses, rest the rest; raises NotFoundError (symbol,
        account), RuleViolation (pair rules), InsufficientFundsError, ConflictError
        (client_order_id reused with other parameters), RiskLimitExceededError (the
        pre-trade check). A `journal` writes its rows in the order's transaction (not on
        an idempotent replay of an earlier order). `flatten`: a kill switch's exit."""
        symbol = self._market.resolve_symbol(request.symbol)
        rules = self._market.pair_rules(symbol)
        ticker = self._market.ticker(symbol)
        # A notional order is drafted from the book now (to refuse a bad one before
        # queueing for the account), and again under the lock (placing.py).
        draft = draft_of(
            request,
            symbol,
            rules,
            ticker,
            self._clock(),
            book=self._books.book(symbol) if request.notional is not None else None,
            # The account is not known yet: the pair's rate. Drafted again under the
            # lock with the account's own (placing.execute_new).
            taker_bps=self._fees.for_pair(rules).taker_bps,
        )
        account_id = await self._account_id(user_id, request.account_id)
        if self._latency:
            # On its way to the venue: it meets the book as it is when it arrives.
            await self._sleep(self._latency)
        placement = Placement(
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
            flatten=flatten,
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
            return await self._idempotent_reply(session, order, request, symbol, draft)

    async def _idempotent_reply(
        self,
        session: AsyncSession,
        order: Order,
        request: OrderCreate,
        symbol: str,
        draft: EngineOrder,
    ) -> OrderRead:
        differences = same_request(order, request, symbol, draft)
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

    async def _place(self, new: Placement) -> OrderRead:
        client_order_id = new.request.client_order_id
        for attempt in range(_CONFLICT_RETRIES):
            outbox = Outbox(new.user_id)
            taken: list[Execution] = []
            try:
                async with self._database.database.transaction() as session:
                    book = await ledger.lock_account(session, new.user_id, new.account_id)
                    if client_order_id is not None and new.journal is None:
                        existing = await order_repo.by_client_id(
                            session, book.account.id, client_order_id
                        )
                        if existing is not None:
                            return await self._idempotent_reply(
                                session, existing, new.request, new.symbol, new.draft
                            )
                    await self._retire(session, book, new, outbox)
                    executed = await execute_new(
                        session,
                        book,
                        new,
                        outbox,
                        taken,
                        books=self._books,
                        fees=self._fees,
                        now=self._clock(),
                        pre_trade=self.pre_trade,
                    )
            except BaseException as error:
                # Refused or rolled back: the depth it took is the market's again, so
                # it never costs the next order (nor this one's retry) anything.
                for execution in taken:
                    self._books.give_back(execution)
                if (
                    isinstance(error, ledger.LedgerConflictError)
                    and attempt < _CONFLICT_RETRIES - 1
                ):
                    continue
                raise
            if new.replaces is not None:
                self._index.cancel(str(new.replaces))
            if executed.rest is not None:
                self._index.add(executed.rest)
            await publish(self._bus, outbox)
            return executed.read
        raise AssertionError("unreachable")

    # -- replacing -----------------------------------------------------------------

    async def replace_order(
        self, user_id: uuid.UUID, order_id: uuid.UUID, changes: OrderReplace
    ) -> OrderRead:
        """Replace an open order by a new version (PATCH), atomically: in one
        transaction the old one is cancelled (its lock released, its reason naming the
        new one) and the new one placed, linked by `replaces_order_id`. If the new one
        is refused (funds, rules), nothing changes. Fills the old one already had stay
        with it; the new one's quantity is `changes.quantity`, or what the old one still
        had open."""
        async with self._database.database.read() as session:
            old = await self._owned(session, user_id, order_id)
        if old.status not in {s.value for s in OPEN_ORDER_STATUSES}:
            raise ConflictError(
                f"order {order_id} is {old.status} and cannot be replaced",
                details={"order_id": str(order_id), "status": old.status},
            )
        try:
            request = replaced_request(old, changes)
        except PydanticValidationError as e:
            raise ValidationFailedError(
                f"the replacement is not a valid order: {e.errors()[0]['msg']}",
                details={"order_id": str(order_id)},
            ) from e
        rules = self._market.pair_rules(old.symbol)
        ticker = self._market.ticker(old.symbol)
        draft = draft_of(request, old.symbol, rules, ticker, self._clock())
        placement = Placement(
            user_id=user_id,
            account_id=old.account_id,
            request=request,
            symbol=old.symbol,
            rules=rules,
            ticker=ticker,
            draft=draft,
            agent_id=old.agent_id,
            decision_id=old.decision_id,
            journal=None,
            replaces=old.id,
        )
        async with self._gate(old.account_id):
            return await self._place(placement)

    @staticmethod
    async def _retire(
        session: AsyncSession, book: ledger.Book, new: Placement, outbox: Outbox
    ) -> None:
        """The replaced order, cancelled in the new one's transaction."""
        if new.replaces is None:
            return
        old = await order_repo.lock_by_id(session, new.replaces)
        if old is None or old.status not in {s.value for s in OPEN_ORDER_STATUSES}:
            status = old.status if old is not None else "gone"
            raise ConflictError(
                f"order {new.replaces} is {status} and cannot be replaced",
                details={"order_id": str(new.replaces), "status": status},
            )
        cancel_in_book(book, old, f"replaced by order {new.draft.id}", utcnow())
        read = read_order(old, await trade_repo.of_order(session, old.id))
        outbox.events.append(
            (Channel.TRADES, EventType.ORDER_CANCELLED, read.model_dump(mode="json"))
        )

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

    async def cancel_order(
        self, user_id: uuid.UUID, order_id: uuid.UUID, *, reason: str = "cancelled by the user"
    ) -> OrderRead:
        """Cancel an open order and release what it held, `reason` as its reason (an
        agent's cancel names the agent and its decision); 409 when it is already closed."""
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
            # No pair rules: an order of a pair no longer traded still releases its lock.
            cancel_in_book(book, order, reason, utcnow())
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
