"""A new order, from the request to its rows: the draft the matching engine sees, and its
execution inside the transaction that holds the account.

`draft_of` turns a request into the engine's order: the pair's rules applied
(services/paper_trading/rules.py), a DAY order's expiry set to the end of its UTC day,
a notional market order's quantity taken from the book. `execute_new` does the rest
under the account's lock, with no await between taking depth from the book and the
funds check, so a refused order gives its depth back before anything else sees the book
without it (the caller, services/paper_trading/service.py, gives it back).

Notional market orders. A buy of `notional` spends at most that, fees included: the
quantity is what the book's asks give for it, level by level at price x (1 + taker
rate), rounded down to the step. A sell of `notional` sells what the bids pay that much
for, before fees. The quantity is worked out again under the lock, from the book as it
is then, so the cap holds even if other orders took depth in between.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, localcontext
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import OrderBook, PairRules, Ticker
from core.exceptions import ValidationFailedError
from database.orm import Order, Trade, TradingAccount
from database.repositories import orders as order_repo
from models.enums import AccountType, OrderSide, OrderStatus, TimeInForce
from models.trading import OrderCreate, OrderRead
from services.paper_trading import ledger
from services.paper_trading.booking import (
    STOPS,
    ZERO,
    Outbox,
    TakerBooks,
    announce,
    apply_fills,
    buy_rest_reserve,
    finish,
    price_fills,
    read_order,
    release,
    trim_lock,
)
from services.paper_trading.fees import FeeRates, FeeSchedule
from services.paper_trading.matching import (
    MONEY_CONTEXT,
    Execution,
    Fill,
    Outcome,
    stop_is_triggered,
    trigger_stop,
)
from services.paper_trading.matching import Order as EngineOrder
from services.paper_trading.rules import normalize_order, round_down_to_step

_BPS = Decimal(10000)


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


class PreparedCheck(Protocol):
    """The pre-trade check with what it read of the account: decides on the order once
    it is known what the order takes (synchronously, between taking depth and the
    funds check). Raises RiskLimitExceededError naming the limit and the numbers."""

    def check(self, *, symbol: str, side: OrderSide, notional: Decimal, rests: bool) -> None: ...


class PreTradeCheck(Protocol):
    """The risk check every new order passes (services/risk/gate.py): `prepare` reads
    what it needs under the account's lock, and may refuse the order outright (a kill
    switch)."""

    async def prepare(
        self, session: AsyncSession, book: ledger.Book, new: Placement
    ) -> PreparedCheck | None:
        """None: nothing to check (no limits hold on the account)."""
        ...

    async def halted(self, session: AsyncSession, book: ledger.Book) -> bool:
        """A kill switch stops the account: its resting orders must not fill."""
        ...


@dataclass(frozen=True, slots=True)
class Placement:
    """A new order as `place_order` prepared it: who places it where, the request, and
    what the market said when it was normalized. `replaces` is the open order a PATCH
    replaces by this one, in the same transaction."""

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
    replaces: uuid.UUID | None = None
    # A sell of a kill switch's flattening: the one order a switch lets through.
    flatten: bool = False


def end_of_day(moment: datetime) -> datetime:
    """When a DAY order placed at `moment` expires: the next midnight, UTC."""
    day = moment.astimezone(UTC).date()
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def quantity_for_notional(
    book: OrderBook, side: OrderSide, notional: Decimal, taker_bps: Decimal, step: Decimal
) -> Decimal:
    """The quantity a notional market order trades against `book` (see the module
    doc), on the step; zero when the book cannot give one step for it."""
    buy = side is OrderSide.BUY
    left, quantity = notional, ZERO
    with localcontext(MONEY_CONTEXT):
        markup = 1 + taker_bps / _BPS if buy else Decimal(1)
        for level in book.asks if buy else book.bids:
            if left <= 0:
                break
            if level.quantity <= 0:
                continue
            unit = level.price * markup
            take = min(level.quantity, left / unit)
            quantity += take
            left -= take * unit
    return round_down_to_step(quantity, step)


def draft_of(
    request: OrderCreate,
    symbol: str,
    rules: PairRules,
    ticker: Ticker,
    now: datetime,
    *,
    book: OrderBook | None = None,
    taker_bps: Decimal = ZERO,
    order_id: str | None = None,
) -> EngineOrder:
    """The engine's order for `request`, normalized to the pair's rules (RuleViolation
    otherwise). A notional order needs the `book` it will walk and its taker rate."""
    quantity = request.quantity
    if request.notional is not None:
        if book is None:
            raise ValueError("a notional order is drafted against a book")
        quantity = quantity_for_notional(
            book, request.side, request.notional, taker_bps, rules.step_size
        )
        if not quantity:
            raise ValidationFailedError(
                f"{request.notional} {rules.quote_asset} does not buy one step "
                f"({rules.step_size}) of {symbol} from the book",
                code="notional_too_small",
                details={"notional": str(request.notional), "step_size": str(rules.step_size)},
            )
    if quantity is None:
        raise ValueError("an order without a quantity or a notional")
    expires_at = request.expires_at
    if request.time_in_force is TimeInForce.DAY:
        expires_at = end_of_day(now)
    elif expires_at is not None and expires_at <= now:
        raise ValidationFailedError(
            f"expires_at {expires_at.isoformat()} is not in the future",
            details={"expires_at": expires_at.isoformat(), "now": now.isoformat()},
        )
    return normalize_order(
        EngineOrder(
            id=order_id or str(uuid.uuid4()),
            account_id="",
            symbol=symbol,
            side=request.side,
            order_type=request.order_type,
            time_in_force=request.time_in_force,
            quantity=quantity,
            remaining=quantity,
            limit_price=request.price,
            stop_price=request.stop_price,
            expires_at=expires_at,
            post_only=request.post_only,
            stop_trigger=request.stop_trigger,
        ),
        rules,
        bid=ticker.bid,
        ask=ticker.ask,
    )


def check_account_takes(account: TradingAccount, symbol: str, rules: PairRules) -> None:
    """Refuses an order the account cannot hold: another quote currency, closed, or
    not a paper account."""
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
    if account.account_type != AccountType.PAPER.value:
        raise ValidationFailedError(
            f"account {account.id} is a {account.account_type} account: the paper exchange "
            "trades paper accounts only",
            details={"account_id": str(account.id), "account_type": account.account_type},
        )


def same_request(order: Order, request: OrderCreate, symbol: str, draft: EngineOrder) -> list[str]:
    """The parameters in which a retried client_order_id differs from the first order."""
    notional = request.notional is not None or order.notional is not None
    pairs: dict[str, tuple[object, object]] = {
        "symbol": (order.symbol, symbol),
        "side": (order.side, draft.side.value),
        "order_type": (order.order_type, draft.order_type.value),
        "time_in_force": (order.time_in_force, draft.time_in_force.value),
        "notional" if notional else "quantity": (
            (order.notional, request.notional) if notional else (order.quantity, draft.quantity)
        ),
        "price": (order.price, draft.limit_price),
        "stop_price": (order.stop_price, draft.stop_price),
        "stop_trigger": (order.stop_trigger, draft.stop_trigger.value),
        "post_only": (order.post_only, draft.post_only),
    }
    if draft.time_in_force is TimeInForce.GTD:
        pairs["expires_at"] = (order.expires_at, draft.expires_at)
    return [name for name, (first, again) in pairs.items() if first != again]


@dataclass(frozen=True, slots=True)
class Executed:
    read: OrderRead
    rest: EngineOrder | None  # what goes into the matching index


async def execute_new(
    session: AsyncSession,
    book: ledger.Book,
    new: Placement,
    outbox: Outbox,
    taken: list[Execution],
    *,
    books: TakerBooks,
    fees: FeeSchedule,
    now: datetime,
    pre_trade: PreTradeCheck | None = None,
) -> Executed:
    """Execute what crosses, lock what rests, write the order, its fills and the
    balances (one flush). Every depth taken is appended to `taken`, for the caller to
    give back if the transaction does not commit."""
    account = book.account
    request, symbol, rules, ticker = new.request, new.symbol, new.rules, new.ticker
    check_account_takes(account, symbol, rules)
    rates = fees.rates(account, rules)
    draft = new.draft
    if request.notional is not None:
        # Again, under the lock, from the book as it is now (see the module doc).
        draft = draft_of(
            request,
            symbol,
            rules,
            ticker,
            now,
            book=books.book(symbol),
            taker_bps=rates.taker_bps,
            order_id=draft.id,
        )
    working = draft
    triggered_at: datetime | None = None
    if draft.order_type in STOPS and stop_is_triggered(
        draft, ticker.last, bid=ticker.bid, ask=ticker.ask
    ):
        working, triggered_at = trigger_stop(draft), now
    # Its reads are the last await before the funds check (see the module doc).
    prepared = await pre_trade.prepare(session, book, new) if pre_trade is not None else None
    execution, fills = _take(working, request, books, rates, taken)
    if execution is None:
        resting: Decimal = working.remaining
    elif execution.outcome is Outcome.RESTING:
        resting = execution.order.remaining
    else:
        resting = ZERO
    buy = draft.side is OrderSide.BUY
    if prepared is not None:
        prepared.check(
            symbol=symbol,
            side=draft.side,
            notional=_notional(fills, resting, working, ticker),
            rests=bool(resting),
        )
    lock_asset = rules.quote_asset if buy else rules.base_asset
    if buy:
        with localcontext(MONEY_CONTEXT):
            spent = sum((fill.notional + fill.fee for fill in fills), ZERO)
            lock = spent + buy_rest_reserve(rates.highest_bps, working, resting)
    else:
        lock = draft.quantity  # spot: the whole quantity must be held, whatever fills
    # The funds check, before any await (see the module doc).
    ledger.change_balance(book, lock_asset, free=-lock, locked=lock)
    order = _order_row(new, account, draft, triggered_at, now)
    # Read before the order is added, so the order's INSERT goes out with its final
    # values in the one flush at the end (write_balances).
    position = await ledger.position_of(session, account, symbol) if fills else None
    order_repo.add(session, order)  # a reused client_order_id fails at its INSERT
    order.locked_amount = lock
    trades: list[Trade] = []
    if fills:
        trades = await apply_fills(
            session, book, order, rules, fills, now, outbox, earlier=[], position=position
        )
    finish(order, execution, resting, now)
    if resting:
        if buy:
            trim_lock(book, order, lock_asset, rates.highest_bps, working, resting)
    else:
        release(book, order, lock_asset)
    read = read_order(order, trades)
    if new.journal is not None:
        await new.journal.record(session, read)
    await ledger.write_balances(session, book)  # flushes all of it, in one go
    announce(outbox, read, trades)
    rest = None
    if resting:
        rest = replace(working, account_id=str(account.id), remaining=resting)
    return Executed(read, rest)


def _take(
    working: EngineOrder,
    request: OrderCreate,
    books: TakerBooks,
    rates: FeeRates,
    taken: list[Execution],
) -> tuple[Execution | None, tuple[Fill, ...]]:
    """What the order takes from the book now (nothing for a waiting stop), priced."""
    if working.order_type in STOPS:
        return None, ()
    execution = books.take(working, rates.taker_bps)
    taken.append(execution)
    fills = price_fills(execution.fills, rates)
    if request.notional is not None and request.side is OrderSide.BUY:
        fills = _within_notional(fills, request.notional)
    return execution, fills


def _notional(
    fills: tuple[Fill, ...], resting: Decimal, working: EngineOrder, ticker: Ticker
) -> Decimal:
    """What the order trades at most: its fills, and what rests at its limit (else its
    stop, else the far touch)."""
    price = working.limit_price or working.stop_price
    if price is None:
        price = ticker.ask if working.side is OrderSide.BUY else ticker.bid
    with localcontext(MONEY_CONTEXT):
        return sum((fill.notional for fill in fills), ZERO) + resting * price


def _within_notional(fills: tuple[Fill, ...], notional: Decimal) -> tuple[Fill, ...]:
    """A notional buy's fills cost at most the notional: the per-level sizing can only
    overshoot by a fee's rounding, which the step's rounding down nearly always covers;
    when it does not, the order is refused rather than spending more than asked."""
    with localcontext(MONEY_CONTEXT):
        cost = sum((fill.notional + fill.fee for fill in fills), ZERO)
    if cost > notional:
        raise ValidationFailedError(
            f"the book gives no quantity on the step for {notional} with its fees "
            f"(it would cost {cost})",
            code="notional_too_small",
            details={"notional": str(notional), "cost": str(cost)},
        )
    return fills


def _order_row(
    new: Placement,
    account: TradingAccount,
    draft: EngineOrder,
    triggered_at: datetime | None,
    now: datetime,
) -> Order:
    request, ticker = new.request, new.ticker
    return Order(
        id=uuid.UUID(draft.id),
        user_id=account.user_id,
        account_id=account.id,
        agent_id=new.agent_id,
        decision_id=new.decision_id,
        client_order_id=request.client_order_id,
        symbol=new.symbol,
        side=draft.side.value,
        order_type=draft.order_type.value,
        time_in_force=draft.time_in_force.value,
        quantity=draft.quantity,
        price=draft.limit_price,
        stop_price=draft.stop_price,
        stop_trigger=draft.stop_trigger.value,
        post_only=draft.post_only,
        expires_at=draft.expires_at,
        notional=request.notional,
        replaces_order_id=new.replaces,
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


def replaced_request(old: Order, changes: OrderReplaceLike) -> OrderCreate:
    """The new version of `old` with `changes`: same symbol, side, type and links; the
    quantity defaults to what `old` still had open."""
    quantity = (
        changes.quantity if changes.quantity is not None else old.quantity - old.filled_quantity
    )
    time_in_force = changes.time_in_force or TimeInForce(old.time_in_force)
    expires_at = changes.expires_at
    if expires_at is None and time_in_force is TimeInForce.GTD:
        expires_at = old.expires_at
    return OrderCreate.model_validate(
        {
            "symbol": old.symbol,
            "side": old.side,
            "order_type": old.order_type,
            "quantity": quantity,
            "price": changes.price if changes.price is not None else old.price,
            "stop_price": changes.stop_price if changes.stop_price is not None else old.stop_price,
            "stop_trigger": old.stop_trigger,
            "time_in_force": time_in_force,
            "expires_at": expires_at,
            "post_only": old.post_only,
            "client_order_id": changes.client_order_id,
            "account_id": old.account_id,
            "strategy": old.strategy,
            "reasoning": old.reasoning,
        }
    )


class OrderReplaceLike(Protocol):
    @property
    def quantity(self) -> Decimal | None: ...
    @property
    def price(self) -> Decimal | None: ...
    @property
    def stop_price(self) -> Decimal | None: ...
    @property
    def time_in_force(self) -> TimeInForce | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def client_order_id(self) -> str | None: ...


__all__ = [
    "Executed",
    "OrderJournal",
    "Placement",
    "PreTradeCheck",
    "PreparedCheck",
    "check_account_takes",
    "draft_of",
    "end_of_day",
    "execute_new",
    "quantity_for_notional",
    "replaced_request",
    "same_request",
]
