"""What a user does to a whole account of the paper exchange, Alpaca paper style: cancel
every open order, close a position or all of them, reset the account.

- Cancel all: each open order (pending or partial, untriggered stops included) goes
  through the exchange's own cancel (`PaperTradingService.cancel_order`): its lock is
  released, it leaves the matching index and its `order_cancelled` event goes out. An
  order that closed or vanished between the list and its cancel is skipped.
- Close: the symbol's open sells are cancelled first (each locks the base asset it
  would sell), then one market sell of the quantity asked (all, `quantity`, or
  `percentage` of the position), rounded down to the pair's step by the exchange. The
  pair's rules are checked before anything is cancelled, so a close that cannot be
  placed (below the pair's minimum) leaves the open sells alone. Spot only: positions
  are long, closing is selling.
- Reset: one transaction holding the account's row lock. The account's open orders are
  cancelled, then its orders and fills are deleted (history goes, as an Alpaca paper
  reset; the agent decisions behind them stay, with their reasoning: the link is on the
  order), its positions are zeroed, every balance but the cash is emptied, the cash is
  the initial balance (a new one if given) and the counters are zero. After the commit
  the cancelled orders leave the matching index and their `order_cancelled` events go
  out. Its equity snapshots are deleted too, so drawdown, Sharpe and the equity curve
  start again from the reset (`after_reset` tells the portfolio service to forget its
  cached peak).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_DOWN, Context, Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import AppError, ConflictError, NotFoundError, ValidationFailedError
from database.orm import Order, Position, TradingAccount
from database.orm.types import utcnow
from database.repositories import orders as order_repo
from database.repositories import portfolio as portfolio_repo
from database.repositories import trades as trade_repo
from database.repositories.accounts import find_account
from models.base import decimal_to_str
from models.enums import AccountType, OrderSide, OrderStatus, OrderType, TimeInForce
from models.events import Channel, EventType
from models.trading import (
    AccountRead,
    AccountResetRead,
    BalanceRead,
    OrderCreate,
    OrderList,
    OrderRead,
    PositionClose,
    PositionCloseList,
    PositionCloseSkipped,
)
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.paper_trading.booking import MarketView, Outbox, publish, read_orders
from services.paper_trading.matching import Order as EngineOrder
from services.paper_trading.rules import RuleCode, RuleViolation, normalize_order
from services.paper_trading.service import PaperTradingService

log = structlog.get_logger(__name__)

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
# A share of a position: exact to far below any step, and never rounded up past it.
_SHARE_CONTEXT = Context(prec=60, rounding=ROUND_DOWN)
_RESET_REASON = "cancelled by an account reset"


class PaperLifecycle:
    """Cancel all, close positions, reset accounts: built on the paper exchange's own
    place and cancel, and sharing its matching index (a reset drops the account's
    resting orders from it)."""

    def __init__(
        self,
        database: DatabaseService,
        market: MarketView,
        trading: PaperTradingService,
        event_bus: EventBus,
    ) -> None:
        self._database = database
        self._market = market
        self._trading = trading
        self._bus = event_bus
        # Called with the account's id after a reset committed (the portfolio service
        # forgets its cached equity peak).
        self.after_reset: list[Callable[[uuid.UUID], None]] = []

    # -- cancel all ------------------------------------------------------------------

    async def cancel_all(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        symbol: str | None = None,
        reason: str = "cancelled by the user",
    ) -> OrderList:
        """Cancel every open order of the user (of one account, of one symbol), each
        through the exchange's cancel with `reason`; one that closed meanwhile is
        skipped. An account of another user is a 404, an unknown symbol too."""
        resolved = self._market.resolve_symbol(symbol) if symbol is not None else None
        async with self._database.database.read() as session:
            if account_id is not None:
                await find_account(session, user_id, account_id)
            orders = await order_repo.open_of(
                session, user_id=user_id, account_id=account_id, symbol=resolved
            )
        cancelled = await self._cancel_each(user_id, [order.id for order in orders], reason)
        return OrderList(items=cancelled, count=len(cancelled))

    async def _cancel_each(
        self, user_id: uuid.UUID, order_ids: list[uuid.UUID], reason: str = "cancelled by the user"
    ) -> list[OrderRead]:
        cancelled = []
        for order_id in order_ids:
            try:
                cancelled.append(await self._trading.cancel_order(user_id, order_id, reason=reason))
            except ledger.LedgerConflictError:
                raise  # the ledger refused a write: a bug to see, not an order to skip
            except (ConflictError, NotFoundError) as e:
                # Filled, cancelled or reset between the list and the cancel.
                log.info("order_not_cancelled", order_id=str(order_id), code=e.code)
        return cancelled

    # -- close -----------------------------------------------------------------------

    async def close_position(
        self,
        user_id: uuid.UUID,
        symbol: str,
        *,
        account_id: uuid.UUID | None = None,
        quantity: Decimal | None = None,
        percentage: Decimal | None = None,
        flatten: bool = False,
    ) -> PositionClose:
        """Sell the position (all of it, `quantity`, or `percentage` of it) at market
        after cancelling the symbol's open sells; 404 without a position, 422 when the
        sell breaks a pair rule or asks for more than is held."""
        _check_close_size(quantity, percentage)
        resolved = self._market.resolve_symbol(symbol)
        async with self._database.database.read() as session:
            account = await find_account(session, user_id, account_id)
            held = await _held(session, account, resolved)
        if quantity is not None and quantity > held:
            raise ValidationFailedError(
                f"quantity {quantity} exceeds the {held} {resolved} held",
                code="quantity_exceeds_position",
                details={"symbol": resolved, "quantity": str(quantity), "position": str(held)},
            )
        # Refuse a sell the pair's rules reject before cancelling anything for it.
        self._check_sell(resolved, _close_quantity(held, quantity, percentage))
        async with self._database.database.read() as session:
            sells = await order_repo.open_of(
                session,
                user_id=user_id,
                account_id=account.id,
                symbol=resolved,
                side=OrderSide.SELL.value,
            )
        cancelled = await self._cancel_each(user_id, [order.id for order in sells])
        async with self._database.database.read() as session:
            # Fills may have moved the position while the sells were cancelled.
            held = await _held(session, account, resolved)
        amount = _close_quantity(held, quantity, percentage)
        sell = OrderCreate(
            symbol=resolved,
            side=OrderSide.SELL,
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.GTC,
            quantity=amount,
            account_id=account.id,
            reasoning=f"close {percentage}% of the position" if percentage else "close position",
        )
        placed = await self._trading.place_order(user_id, sell, flatten=flatten)
        log.info(
            "position_closed",
            account_id=str(account.id),
            symbol=resolved,
            order_id=str(placed.id),
            filled=str(placed.filled_quantity),
            cancelled=len(cancelled),
        )
        return PositionClose(symbol=resolved, order=placed, cancelled_orders=cancelled)

    def _check_sell(self, symbol: str, quantity: Decimal) -> None:
        rules = self._market.pair_rules(symbol)
        if quantity <= 0:  # a share so small it underflowed (percentage=1e-999999)
            raise RuleViolation(
                RuleCode.QUANTITY_BELOW_STEP,
                f"quantity {quantity} is below the step size {rules.step_size}",
                {"quantity": str(quantity), "step_size": str(rules.step_size)},
            )
        ticker = self._market.ticker(symbol)
        draft = EngineOrder(
            id="close",
            account_id="",
            symbol=symbol,
            side=OrderSide.SELL,
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.GTC,
            quantity=quantity,
            remaining=quantity,
        )
        normalize_order(draft, rules, bid=ticker.bid, ask=ticker.ask)

    async def close_all(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None = None, flatten: bool = False
    ) -> PositionCloseList:
        """Close every open position of the account (the default one unless named),
        one market sell each; a position that cannot be sold (below the pair's minimum,
        say) is reported in `skipped` with the reason, and the others still close.
        `flatten`: a kill switch's exit, the one trade the switch lets through."""
        async with self._database.database.read() as session:
            account = await find_account(session, user_id, account_id)
            positions = [
                (p.symbol, p.quantity)
                for p in await portfolio_repo.positions_of(session, account.id, user_id=user_id)
                if p.quantity > 0
            ]
        closed: list[PositionClose] = []
        skipped: list[PositionCloseSkipped] = []
        for symbol, held in positions:
            try:
                closed.append(
                    await self.close_position(
                        user_id, symbol, account_id=account.id, flatten=flatten
                    )
                )
            except AppError as e:
                skipped.append(
                    PositionCloseSkipped(
                        symbol=symbol, quantity=held, code=e.code, message=e.message
                    )
                )
        return PositionCloseList(items=closed, count=len(closed), skipped=skipped)

    # -- reset -----------------------------------------------------------------------

    async def reset_account(
        self,
        user_id: uuid.UUID,
        account_id: uuid.UUID | None = None,
        *,
        initial_balance: Decimal | None = None,
    ) -> AccountResetRead:
        """Return a paper account to its first state, in one transaction under its lock:
        open orders cancelled, orders and fills deleted, positions and other assets
        emptied, cash = the initial balance (`initial_balance` replaces it), counters
        zero. The default account unless `account_id` names another of the user's."""
        if initial_balance is not None and initial_balance <= 0:
            raise ValidationFailedError(
                "initial_balance must be positive",
                details={"initial_balance": str(initial_balance)},
            )
        if account_id is None:
            async with self._database.database.read() as session:
                account_id = (await find_account(session, user_id, None)).id
        now = utcnow()
        async with self._database.database.transaction() as session:
            book = await ledger.lock_account(session, user_id, account_id)
            account = book.account
            if account.account_type != AccountType.PAPER.value:
                raise ValidationFailedError(
                    f"only paper accounts can be reset; this one is {account.account_type}",
                    details={"account_id": str(account.id), "account_type": account.account_type},
                )
            open_orders = await order_repo.open_of(session, user_id=user_id, account_id=account.id)
            cancelled = await _as_cancelled(session, open_orders, now)
            positions = await portfolio_repo.positions_of(session, account.id, user_id=user_id)
            deleted_fills = await trade_repo.delete_of_account(session, account.id)
            deleted_orders = await order_repo.delete_of_account(session, account.id)
            await portfolio_repo.delete_snapshots_of_account(session, account.id)
            for position in positions:
                _zero(position)
            cash = initial_balance if initial_balance is not None else account.initial_balance
            _refill(book, account.base_currency, cash)
            _restart(account, cash)
            await ledger.write_balances(session, book)  # flushes all of it
            read = AccountResetRead(
                account=AccountRead.model_validate(account),
                balances=[
                    BalanceRead(asset=asset, free=book.free(asset), locked=book.locked(asset))
                    for asset in sorted(book.balances)
                ],
                cancelled_orders=len(cancelled),
                deleted_orders=deleted_orders,
                deleted_fills=deleted_fills,
            )
        self._trading.forget_orders(str(order.id) for order in cancelled)
        for forget in self.after_reset:
            forget(account.id)
        outbox = Outbox(user_id)
        outbox.events.extend(
            (Channel.TRADES, EventType.ORDER_CANCELLED, order.model_dump(mode="json"))
            for order in cancelled
        )
        outbox.events.append(
            (
                Channel.PORTFOLIO,
                EventType.PORTFOLIO_UPDATE,
                {
                    "kind": "reset",
                    "account_id": str(account_id),
                    "cash": decimal_to_str(cash),
                    "cancelled_orders": len(cancelled),
                    "deleted_orders": deleted_orders,
                    "deleted_fills": deleted_fills,
                    "reset_at": now.isoformat(),
                },
            )
        )
        await publish(self._bus, outbox)
        log.info(
            "account_reset",
            account_id=str(account_id),
            cancelled_orders=len(cancelled),
            deleted_orders=deleted_orders,
            deleted_fills=deleted_fills,
        )
        return read


def _check_close_size(quantity: Decimal | None, percentage: Decimal | None) -> None:
    if quantity is not None and percentage is not None:
        raise ValidationFailedError(
            "give quantity or percentage, not both",
            details={"quantity": str(quantity), "percentage": str(percentage)},
        )
    if quantity is not None and not (quantity.is_finite() and quantity > 0):
        raise ValidationFailedError(
            "quantity must be positive", details={"quantity": str(quantity)}
        )
    if percentage is not None and not (percentage.is_finite() and 0 < percentage <= _HUNDRED):
        raise ValidationFailedError(
            "percentage must be above 0 and at most 100",
            details={"percentage": str(percentage)},
        )


def _close_quantity(held: Decimal, quantity: Decimal | None, percentage: Decimal | None) -> Decimal:
    """What a close sells before the pair's step rounds it down."""
    if quantity is not None:
        return quantity
    if percentage is None or percentage == _HUNDRED:
        return held
    return _SHARE_CONTEXT.divide(_SHARE_CONTEXT.multiply(held, percentage), _HUNDRED)


async def _held(session: AsyncSession, account: TradingAccount, symbol: str) -> Decimal:
    """The account's open position in `symbol`; NotFoundError when it holds none."""
    positions = await portfolio_repo.positions_of(session, account.id, user_id=account.user_id)
    for position in positions:
        if position.symbol == symbol and position.quantity > 0:
            return position.quantity
    raise NotFoundError(
        f"no open {symbol} position in account {account.id}",
        details={"symbol": symbol, "account_id": str(account.id)},
    )


async def _as_cancelled(
    session: AsyncSession, orders: list[Order], now: datetime
) -> list[OrderRead]:
    """The open orders as a reset leaves them (cancelled, nothing locked), for their
    events. The rows themselves are deleted, so they are read, not changed."""
    reads = await read_orders(session, orders)
    for read in reads:
        read.status = OrderStatus.CANCELLED
        read.locked_amount = _ZERO
        read.reject_reason = _RESET_REASON
        read.closed_at = read.updated_at = now
    return reads


def _zero(position: Position) -> None:
    position.quantity = _ZERO
    position.avg_price = _ZERO
    position.cost_basis = _ZERO
    position.realized_pnl = _ZERO
    position.last_trade_at = None


def _refill(book: ledger.Book, cash_asset: str, cash: Decimal) -> None:
    """Every balance of the book to zero, the cash asset's to `cash` free."""
    for asset in sorted({*book.balances, cash_asset}):
        target = cash if asset == cash_asset else _ZERO
        ledger.change_balance(
            book, asset, free=target - book.free(asset), locked=-book.locked(asset)
        )


def _restart(account: TradingAccount, cash: Decimal) -> None:
    account.initial_balance = cash
    account.realized_pnl = _ZERO
    account.total_fees = _ZERO
    account.total_trades = 0
    account.winning_trades = 0
    account.losing_trades = 0
    account.max_drawdown = _ZERO
    account.sharpe_ratio = None
