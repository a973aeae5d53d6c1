"""Queries on trading signals. Every read is scoped to the owner. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from database.locking import upsert
from database.orm import TradingSignal

SIGNAL_KEYS = ("strategy_id", "symbol", "timeframe", "candle_open_time")


async def upsert_signals(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert the signals; one already stored for its strategy, symbol, timeframe and
    candle is overwritten."""
    await session.execute(upsert(session, TradingSignal.__table__, SIGNAL_KEYS, rows), rows)


async def signals_of(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    strategy_id: uuid.UUID | None = None,
    symbol: str | None = None,
    actions: Sequence[str] | None = None,
    before: datetime | None = None,
    limit: int,
) -> list[TradingSignal]:
    """The user's signals, newest candle first (then newest written)."""
    query = select(TradingSignal).where(TradingSignal.user_id == user_id)
    if strategy_id is not None:
        query = query.where(TradingSignal.strategy_id == strategy_id)
    if symbol is not None:
        query = query.where(TradingSignal.symbol == symbol)
    if actions:
        query = query.where(TradingSignal.action.in_(list(actions)))
    if before is not None:
        query = query.where(TradingSignal.candle_open_time < before)
    order = (TradingSignal.candle_open_time.desc(), TradingSignal.id.desc())
    return list(await session.scalars(query.order_by(*order).limit(limit)))


async def latest_signals(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    strategy_ids: Sequence[uuid.UUID],
    symbols: Sequence[str],
) -> list[TradingSignal]:
    """Per strategy, symbol and timeframe, the signal of the newest candle: what an agent
    that lists these strategies sees of them."""
    if not strategy_ids or not symbols:
        return []
    scope = (
        TradingSignal.user_id == user_id,
        TradingSignal.strategy_id.in_(list(strategy_ids)),
        TradingSignal.symbol.in_(list(symbols)),
    )
    newest = (
        select(
            TradingSignal.strategy_id,
            TradingSignal.symbol,
            TradingSignal.timeframe,
            func.max(TradingSignal.candle_open_time).label("open_time"),
        )
        .where(*scope)
        .group_by(TradingSignal.strategy_id, TradingSignal.symbol, TradingSignal.timeframe)
        .subquery()
    )
    query = (
        select(TradingSignal)
        .join(
            newest,
            (TradingSignal.strategy_id == newest.c.strategy_id)
            & (TradingSignal.symbol == newest.c.symbol)
            & (TradingSignal.timeframe == newest.c.timeframe)
            & (TradingSignal.candle_open_time == newest.c.open_time),
        )
        .where(*scope)
        .order_by(TradingSignal.strategy_id, TradingSignal.symbol, TradingSignal.timeframe)
    )
    return list(await session.scalars(query))
