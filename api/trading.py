"""The paper exchange over HTTP: place, read, list and cancel orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentUserId, ServicesDep
from api.routing import ExactDecimalRoute
from models.base import Page
from models.enums import OrderSide
from models.portfolio import AccountMetricsRead
from models.trading import OrderCreate, OrderRead, PaperPortfolioRead
from services.paper_trading_service import OrderListStatus

router = APIRouter(prefix="/trading/paper", tags=["trading"], route_class=ExactDecimalRoute)

_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "Unknown symbol or account."},
    409: {"description": "client_order_id reused with other parameters."},
    422: {"description": "Invalid order: a pair rule, the funds, or the request shape."},
}


@router.post(
    "/order",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    responses=_ERRORS,
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


@router.get("/orders", response_model=Page[OrderRead], summary="List orders and their fills")
@router.get("/history", response_model=Page[OrderRead], summary="Order and fill history")
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
    response_model=OrderRead,
    responses={404: {"description": "No such order of this user."}},
)
async def get_order(
    order_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> OrderRead:
    return await services.paper_trading.get_order(user_id, order_id)


@router.delete(
    "/orders/{order_id}",
    response_model=OrderRead,
    responses={
        404: {"description": "No such order of this user."},
        409: {"description": "The order is already filled, cancelled or rejected."},
    },
)
async def cancel_order(
    order_id: uuid.UUID, services: ServicesDep, user_id: CurrentUserId
) -> OrderRead:
    """Cancel an open order; what it locked returns to the free balance."""
    return await services.paper_trading.cancel_order(user_id, order_id)


@router.get(
    "/portfolio",
    response_model=PaperPortfolioRead,
    responses={404: {"description": "No such account of this user."}},
)
async def paper_portfolio(
    services: ServicesDep, user_id: CurrentUserId, account_id: uuid.UUID | None = None
) -> PaperPortfolioRead:
    """Balances (free and locked) and positions at the latest mark; the default account
    unless `account_id` names another of yours."""
    return await services.portfolio.account_portfolio(user_id, account_id=account_id)


@router.get(
    "/metrics",
    response_model=AccountMetricsRead,
    responses={404: {"description": "No such account of this user."}},
)
async def paper_metrics(
    services: ServicesDep, user_id: CurrentUserId, account_id: uuid.UUID | None = None
) -> AccountMetricsRead:
    """Realized, unrealized and total PnL, fees, winning and losing trades, win rate,
    max drawdown and Sharpe (from the periodic equity snapshots)."""
    return await services.portfolio.metrics(user_id, account_id=account_id)
