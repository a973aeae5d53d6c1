"""The paper exchange over HTTP: place, read, list and cancel orders; list fills; cancel
every order, close positions, reset an account."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.base import IsoAwareDatetime, Page
from models.enums import OrderSide
from models.portfolio import AccountMetricsRead
from models.trading import (
    AccountReset,
    AccountResetRead,
    CursorPage,
    OrderCreate,
    OrderList,
    OrderRead,
    OrderReplace,
    PaperPortfolioRead,
    PositionClose,
    PositionCloseList,
    TradeRead,
)
from services.paper_trading.service import OrderListStatus

router = APIRouter(prefix="/trading/paper", tags=["trading"], route_class=ExactDecimalRoute)

_NO_ORDER = "No such order of this user."
_NO_ACCOUNT = "No such account of this user."
# The list's `symbol` filter names a pair: one not traded is a 404.
_LIST_ERRORS = error_responses(
    not_found="The `symbol` filter is not a traded pair.",
    invalid=f"{INVALID_REQUEST} A `cursor` that is not a `next_cursor` of this list is "
    "`invalid_cursor`, with the reason.",
)
_ACCOUNT_QUERY = Annotated[
    uuid.UUID | None, Query(description="One of your accounts; omitted: the default one.")
]
_CLOSE_CONFLICT = (
    "The account changed under the sell too often to place it (retry), or a kill switch "
    "stops the account (`kill_switch_engaged`)."
)
_StatusFilter = Annotated[
    OrderListStatus | None,
    Query(description="open = pending or partial; closed = filled, cancelled, rejected."),
]
_SymbolFilter = Annotated[str | None, Query(description="BTC/USD or BTC-USD")]
_ZONE = " (ISO 8601 with a time zone, e.g. 2026-01-01T00:00:00Z)."
_CreatedFrom = Annotated[IsoAwareDatetime | None, Query(description="Created at or after" + _ZONE)]
_CreatedBefore = Annotated[IsoAwareDatetime | None, Query(description="Created before" + _ZONE)]
_ExecutedFrom = Annotated[
    IsoAwareDatetime | None, Query(description="Executed at or after" + _ZONE)
]
_ExecutedBefore = Annotated[IsoAwareDatetime | None, Query(description="Executed before" + _ZONE)]
_Limit = Annotated[int, Query(ge=1, le=500, description="Rows per page, 1 to 500.")]
_Cursor = Annotated[
    str | None,
    Query(
        max_length=200,
        description="The `next_cursor` of the previous page, unchanged; omitted: the first page.",
    ),
]


@router.post(
    "/order",
    operation_id="placePaperOrder",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    responses=error_responses(
        not_found="Unknown symbol or account.",
        conflict="client_order_id reused with other parameters, the account changed "
        "under the order too often to place it (retry), or a kill switch stops the "
        "account (`kill_switch_engaged`).",
        invalid="Invalid order: a pair rule (its code names the rule), the funds "
        "(`insufficient_funds`), a risk limit (`risk_limit_exceeded`: each limit and its "
        "numbers in `details.limits`), the account, or the request shape.",
    ),
    summary="Place a paper order",
)
async def place_order(
    body: OrderCreate, services: ServicesDep, user_id: CurrentUserId
) -> OrderRead:
    """Market orders walk the book from the touch (size moves the price; a thin book
    fills partly: IOC keeps the part, FOK all or nothing). Crossing limits fill at once
    as taker, the rest rests (GTC) and fills as maker when the market trades through
    it. Stops trigger on the last price. Funds or assets for the open part are locked.
    The result's status is filled, partial, pending, cancelled (the unfilled rest of a
    market or IOC order) or rejected (with `reject_reason`). Resending the same
    `client_order_id` returns the original order."""
    return await services.paper_trading.place_order(user_id, body)


@router.get(
    "/orders",
    operation_id="listPaperOrders",
    response_model=CursorPage[OrderRead],
    responses=_LIST_ERRORS,
    summary="List orders and their fills, by cursor",
)
async def list_orders(
    services: ServicesDep,
    user_id: CurrentUserId,
    status: _StatusFilter = None,
    account_id: uuid.UUID | None = None,
    symbol: _SymbolFilter = None,
    side: OrderSide | None = None,
    agent_id: uuid.UUID | None = None,
    start: _CreatedFrom = None,
    end: _CreatedBefore = None,
    limit: _Limit = 50,
    cursor: _Cursor = None,
) -> CursorPage[OrderRead]:
    """Orders newest first (by created_at, then id), each with its fills (price,
    quantity, fee, maker/taker). Keyset pages: pass `next_cursor` back as `cursor` until
    it is null; orders placed meanwhile never repeat or shift a page. There is no total:
    /history is the offset list with one."""
    return await services.paper_activity.orders(
        user_id,
        account_id=account_id,
        status=status,
        symbol=symbol,
        side=side,
        agent_id=agent_id,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/history",
    operation_id="getPaperOrderHistory",
    response_model=Page[OrderRead],
    responses=error_responses(
        not_found="The `symbol` filter is not a traded pair.", invalid=INVALID_REQUEST
    ),
    summary="Order and fill history, by offset",
)
async def order_history(
    services: ServicesDep,
    user_id: CurrentUserId,
    status: _StatusFilter = None,
    account_id: uuid.UUID | None = None,
    symbol: _SymbolFilter = None,
    side: OrderSide | None = None,
    agent_id: uuid.UUID | None = None,
    start: _CreatedFrom = None,
    end: _CreatedBefore = None,
    limit: _Limit = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[OrderRead]:
    """The seed API's list under its name: the same orders as /orders, newest first,
    paged by `offset` with the matching `total`. It counts on every call, and orders
    placed between two calls shift the pages (a row can repeat or be skipped): walk
    /orders by cursor instead."""
    return await services.paper_activity.history(
        user_id,
        account_id=account_id,
        status=status,
        symbol=symbol,
        side=side,
        agent_id=agent_id,
        start=start,
        end=end,
        limit=limit,
        offset=offset,
    )


@router.delete(
    "/orders",
    operation_id="cancelAllPaperOrders",
    response_model=OrderList,
    responses=error_responses(
        not_found="Unknown symbol, or no such account of this user.", invalid=INVALID_REQUEST
    ),
    summary="Cancel every open order",
)
async def cancel_all_orders(
    services: ServicesDep,
    user_id: CurrentUserId,
    symbol: _SymbolFilter = None,
    account_id: Annotated[
        uuid.UUID | None, Query(description="One account; omitted: all of yours.")
    ] = None,
) -> OrderList:
    """Cancel every open order (pending or partial, untriggered stops included), of one
    account or symbol if given; what each locked returns to the free balance. Returns
    the orders cancelled; one that filled or closed meanwhile is left out, not an
    error."""
    return await services.paper_lifecycle.cancel_all(user_id, account_id=account_id, symbol=symbol)


@router.get(
    "/orders/{order_id}",
    operation_id="getPaperOrder",
    response_model=OrderRead,
    responses=error_responses(not_found=_NO_ORDER, invalid=INVALID_REQUEST),
    summary="One order and its fills",
)
async def get_order(
    order_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> OrderRead:
    """The order as it stands, with every fill."""
    return await services.paper_trading.get_order(user_id, order_id)


@router.delete(
    "/orders/{order_id}",
    operation_id="cancelPaperOrder",
    response_model=OrderRead,
    responses=error_responses(
        not_found=_NO_ORDER,
        conflict="The order is already filled, cancelled or rejected.",
        invalid=INVALID_REQUEST,
    ),
    summary="Cancel an open order",
)
async def cancel_order(
    order_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> OrderRead:
    """Cancel an open order; what it locked returns to the free balance."""
    return await services.paper_trading.cancel_order(user_id, order_id)


@router.patch(
    "/orders/{order_id}",
    operation_id="replacePaperOrder",
    response_model=OrderRead,
    responses=error_responses(
        not_found=_NO_ORDER,
        conflict="The order is already filled, cancelled or rejected, its "
        "client_order_id was used for another order, or a kill switch stops the account.",
        invalid="Nothing to change, a change the order's type does not take, a pair rule, "
        "the funds for the new version (`insufficient_funds`) or a risk limit.",
    ),
    summary="Replace an open order (quantity, limit, stop, expiry)",
)
async def replace_order(
    order_id: uuid.UUID, body: OrderReplace, services: ServicesDep, user_id: CurrentUserId
) -> OrderRead:
    """Atomically cancels the open order and places its new version, which names it in
    `replaces_order_id` (the old one's `reject_reason` names the new one). Symbol, side
    and type stay; the quantity defaults to what the old one still had open. If the new
    version is refused, the old one stays as it was. The new version takes its place in
    the queue as a new order (time priority is lost, as at every venue)."""
    return await services.paper_trading.replace_order(user_id, order_id, body)


@router.get(
    "/portfolio",
    operation_id="getPaperPortfolio",
    response_model=PaperPortfolioRead,
    responses=error_responses(not_found=_NO_ACCOUNT, invalid=INVALID_REQUEST),
    summary="An account's balances and positions",
)
async def paper_portfolio(
    services: ServicesDep, user_id: CurrentUserId, account_id: uuid.UUID | None = None
) -> PaperPortfolioRead:
    """Balances (free and locked) and positions at the latest mark; the default account
    unless `account_id` names another of yours."""
    return await services.portfolio.account_portfolio(user_id, account_id=account_id)


@router.get(
    "/metrics",
    operation_id="getPaperMetrics",
    response_model=AccountMetricsRead,
    responses=error_responses(not_found=_NO_ACCOUNT, invalid=INVALID_REQUEST),
    summary="An account's PnL and trading metrics",
)
async def paper_metrics(
    services: ServicesDep, user_id: CurrentUserId, account_id: uuid.UUID | None = None
) -> AccountMetricsRead:
    """Realized, unrealized and total PnL, fees, winning and losing trades, win rate,
    max drawdown and Sharpe (from the periodic equity snapshots)."""
    return await services.portfolio.metrics(user_id, account_id=account_id)


@router.get(
    "/fills",
    operation_id="listPaperFills",
    response_model=CursorPage[TradeRead],
    responses=_LIST_ERRORS,
    summary="List fills (account activity), by cursor",
)
async def list_fills(
    services: ServicesDep,
    user_id: CurrentUserId,
    account_id: uuid.UUID | None = None,
    symbol: _SymbolFilter = None,
    side: OrderSide | None = None,
    order_id: uuid.UUID | None = None,
    start: _ExecutedFrom = None,
    end: _ExecutedBefore = None,
    limit: _Limit = 50,
    cursor: _Cursor = None,
) -> CursorPage[TradeRead]:
    """Every fill of your orders newest first (by executed_at, then id): price,
    quantity, fee, maker/taker and the PnL a sell realized. Keyset pages: pass
    `next_cursor` back as `cursor` until it is null; fills booked meanwhile never
    repeat or shift a page."""
    return await services.paper_activity.fills(
        user_id,
        account_id=account_id,
        symbol=symbol,
        side=side,
        order_id=order_id,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
    )


@router.delete(
    "/positions/{symbol:path}",
    operation_id="closePaperPosition",
    response_model=PositionClose,
    responses=error_responses(
        not_found="Unknown symbol or account, or no open position in the symbol.",
        conflict=_CLOSE_CONFLICT,
        invalid="A pair rule the sell breaks (its code names the rule, e.g. "
        "`quantity_below_minimum`), `quantity_exceeds_position`, `quantity` and "
        "`percentage` both given, or an invalid parameter (`validation_failed`).",
    ),
    summary="Close a position",
)
async def close_position(
    symbol: Annotated[str, Path(description="BTC-USD, or BTC/USD (also as BTC%2FUSD).")],
    services: ServicesDep,
    user_id: CurrentUserId,
    quantity: Annotated[
        Decimal | None,
        Query(
            gt=0,
            lt=Decimal(10) ** 20,
            allow_inf_nan=False,
            description="Base quantity to sell; omitted (and no percentage): all of it.",
        ),
    ] = None,
    percentage: Annotated[
        Decimal | None,
        Query(gt=0, le=100, allow_inf_nan=False, description="Share of the position to sell."),
    ] = None,
    account_id: _ACCOUNT_QUERY = None,
) -> PositionClose:
    """Cancel the symbol's open sell orders (they hold the base asset), then sell the
    position at market: all of it, `quantity`, or `percentage` of it (not both), rounded
    down to the pair's step. Positions are long (spot): closing is selling."""
    return await services.paper_lifecycle.close_position(
        user_id, symbol, account_id=account_id, quantity=quantity, percentage=percentage
    )


@router.delete(
    "/positions",
    operation_id="closeAllPaperPositions",
    response_model=PositionCloseList,
    responses=error_responses(not_found=_NO_ACCOUNT, invalid=INVALID_REQUEST),
    summary="Close every position",
)
async def close_all_positions(
    services: ServicesDep, user_id: CurrentUserId, account_id: _ACCOUNT_QUERY = None
) -> PositionCloseList:
    """Close each open position of the account as DELETE /positions/{symbol} does; a
    position that cannot be sold (its rest is below the pair's minimum, say) is listed
    in `skipped` with the error, and the others still close."""
    return await services.paper_lifecycle.close_all(user_id, account_id=account_id)


_RESET_ERRORS = error_responses(
    not_found=_NO_ACCOUNT,
    invalid="Not a paper account, or an invalid `initial_balance` (positive, at most 18 decimals).",
)


@router.post(
    "/accounts/{account_id}/reset",
    operation_id="resetPaperAccount",
    response_model=AccountResetRead,
    responses=_RESET_ERRORS,
    summary="Reset a paper account",
)
async def reset_account(
    account_id: uuid.UUID,
    services: ServicesDep,
    user_id: CurrentUserId,
    body: AccountReset | None = None,
) -> AccountResetRead:
    """Cancel the account's open orders and delete its orders and fills; its positions
    and every asset but the cash go to zero, the cash to the initial balance
    (`initial_balance` sets a new one), realized PnL, fees and trade counts to zero. One
    transaction: nothing changes if it fails. Agent decisions keep their reasoning;
    equity snapshots are kept."""
    return await services.paper_lifecycle.reset_account(
        user_id, account_id, initial_balance=body.initial_balance if body else None
    )


@router.post(
    "/account/reset",
    operation_id="resetDefaultPaperAccount",
    response_model=AccountResetRead,
    responses=_RESET_ERRORS,
    summary="Reset the default paper account",
)
async def reset_default_account(
    services: ServicesDep, user_id: CurrentUserId, body: AccountReset | None = None
) -> AccountResetRead:
    """POST /accounts/{account_id}/reset for your default account."""
    return await services.paper_lifecycle.reset_account(
        user_id, None, initial_balance=body.initial_balance if body else None
    )
