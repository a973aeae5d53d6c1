"""Strategies' live signals as the API and the `signals` channel show them.

One per active strategy, symbol and closed candle of its timeframe
(services/strategies/live.py): the action (buy: it enters; sell: it leaves; hold),
strength 0-100 and confidence 0-1 (docs/backtests.md, "Signals"), the candle's close,
and in `metadata` the wanted position, the strategy's type and its indicators.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from models.base import AppModel, DecimalStr
from models.enums import SignalAction, Timeframe

MAX_SIGNALS_PAGE = 500


class SignalRead(AppModel):
    id: uuid.UUID
    strategy_id: uuid.UUID | None
    agent_id: uuid.UUID | None = Field(description="Null for a strategy's own signal.")
    symbol: str
    timeframe: Timeframe
    candle_open_time: datetime = Field(description="The closed candle it was read from.")
    action: SignalAction
    strength: DecimalStr = Field(description="0-100: how far from flipping its view.")
    confidence: DecimalStr = Field(description="0-1: the volume behind the candle.")
    price: DecimalStr = Field(description="The candle's close.")
    reasoning: str | None
    metadata: dict[str, Any] = Field(
        validation_alias="signal_metadata",
        description="`position` (1 long, 0 flat), `strategy_type`, `indicators` at the "
        "candle (null where undefined), `history_candles` (how many it was computed on).",
    )
    created_at: datetime

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SignalRead:
        return cls.model_validate({**record, "signal_metadata": record["metadata"]})


class SignalList(AppModel):
    items: list[SignalRead]
    count: int
