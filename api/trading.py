"""The paper exchange over HTTP: place, read, list and cancel orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.base import Page
from models.enums import OrderSide
from models.portfolio import AccountMetricsRead
from models.trading import OrderCreate, OrderRead, PaperPortfolioRead
from services.paper_trading.service import OrderListStatus

router = APIRouter(prefix="/trading/paper", tags=["trading"], route_class=ExactDecimalRoute)

_NO_ORDER = "No such order of this user."
_NO_ACCOUNT = "No such account of this user."
# The list's `symbol` filter names a pair: one not traded is a 404.
_LIST_ERRORS = error_responses(
    not_found="The `symbol` filter is not a traded pair.", invalid=INVALID_REQUEST
)


@router.post(
    "/order",
    operation_id="placePaperOrder",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    responses=error_responses(
        not_found="Unknown symbol or account.",
        conflict="client_order_id reused with other parameters, or the account changed "
        "under the order too often to place it (retry).",
        invalid="Invalid order: a pair rule (its code names the rule), the funds "
        "(`insufficient_funds`), the account, or the request shape.",
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
    response_model=Page[OrderRead],
    responses=_LIST_ERRORS,
    summary="List orders and their fills",
)
@router.get(
    "/history",
    operation_id="getPaperOrderHistory",
    response_model=Page[OrderRead],
    responses=_LIST_ERRORS,
    summary="Order and fill history",
)
async def list_orders(
    services: ServicesDep,
    user_id: CurrentUserId,
    status: Annotated[
        OrderListStatus | None,
        Query(description="open = pending or partial; closed = filled, cancelled, rejected."),
    ] = None,
    account_id: uuid.UUID | None = None,
    symbol: Annotated[str | None, Query(description="BTC/USD or BTC-USD")] = None,
    side: OrderSide | None = None,
    agent_id: uuid.UUID | None = None,
    start: Annotated[datetime | None, Query(description="Created at or after (ISO 8601).")] = None,
    end: Annotated[datetime | None, Query(description="Created before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[OrderRead]:
    """Orders newest first, each with its fills (price, quantity, fee, maker/taker);
    /history is the same list under the seed's name."""
    return await services.paper_trading.list_orders(
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
