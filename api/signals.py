"""Strategies' live signals: what each active strategy read from its symbols' closed
candles (services/strategies/live.py; pushed live on the `signals` channel)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentUserId, ServicesDep
from api.responses import INVALID_REQUEST, error_responses
from api.routing import ExactDecimalRoute
from models.base import IsoAwareDatetime
from models.enums import SignalAction
from models.signals import MAX_SIGNALS_PAGE, SignalList

router = APIRouter(prefix="/strategies", tags=["strategies"], route_class=ExactDecimalRoute)


@router.get(
    "/{strategy_id}/signals",
    operation_id="listStrategySignals",
    responses=error_responses(not_found="No such strategy of this user.", invalid=INVALID_REQUEST),
    summary="A strategy's signals",
)
async def list_strategy_signals(
    strategy_id: uuid.UUID,
    services: ServicesDep,
    user_id: CurrentUserId,
    symbol: Annotated[
        str | None, Query(min_length=1, max_length=32, description="BTC/USD or BTC-USD.")
    ] = None,
    action: Annotated[SignalAction | None, Query(description="Only buys, sells or holds.")] = None,
    before: Annotated[
        IsoAwareDatetime | None,
        Query(description="Only candles that opened before this (the next page)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SIGNALS_PAGE)] = 100,
) -> SignalList:
    """The strategy's signals, newest candle first: one per closed candle of each of its
    symbols while it is active."""
    return await services.strategies.list_signals(
        user_id, strategy_id, symbol=symbol, action=action, before=before, limit=limit
    )
