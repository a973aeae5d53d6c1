"""Schemas of the candle import (POST /api/v1/market/candles/import, docs/imports.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from models.base import AppModel
from models.enums import Timeframe

IMPORT_SYMBOL = (
    "Any pair, traded here or not: `BTC/USDT`, `BTC-USDT` and `btc-usdt` all mean `BTC/USDT` "
    "(1 to 32 characters: letters, digits and `/ - . _ :`)."
)
# Before normalisation: the characters a symbol may have (a dash becomes a slash).
IMPORT_SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9/._:-]{0,31}$"


class CandleImportRead(AppModel):
    symbol: str = Field(description="The normalised symbol the candles are stored under.")
    timeframe: Timeframe
    exchange: str = Field(description="The series' exchange name: always `imported`.")
    rows: int = Field(description="Candles written (new or overwritten).")
    first_open_time: datetime
    last_open_time: datetime
    seconds: float = Field(description="Time taken, reading the upload included.")
