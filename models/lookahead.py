"""The look-ahead check of a strategy: its request and its report (docs/backtests.md,
'Look-ahead check').

The period is the backtest's: the fields below are `BacktestRequest`'s own (their types,
bounds, defaults and descriptions), so both routes read a period the same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from models.base import AppModel, InputModel, IsoAwareDatetime
from models.enums import Timeframe
from models.strategies import BacktestRequest

# A check recomputes the signals once per cut point over up to MAX_BACKTEST_CANDLES
# candles: this bounds its cost (docs/backtests.md gives the figures).
MAX_LOOKAHEAD_CUTS = 250
# Findings listed in a report; `findings_total` counts them all.
MAX_LOOKAHEAD_FINDINGS = 100

_PERIOD = BacktestRequest.model_fields


class LookaheadRequest(InputModel):
    symbol: Annotated[str, _PERIOD["symbol"]]
    timeframe: Annotated[Timeframe, _PERIOD["timeframe"]]
    start: Annotated[IsoAwareDatetime, _PERIOD["start"]]
    end: Annotated[IsoAwareDatetime | None, _PERIOD["end"]]
    max_cut_points: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LOOKAHEAD_CUTS,
        description="At most this many cut points, evenly spaced over the position changes "
        "(the first and the last always among them). Default: every change of position, "
        f"thinned the same way when there are more than {MAX_LOOKAHEAD_CUTS}.",
    )


class LookaheadFinding(AppModel):
    """One value of the full run that the run cut at `cut` computed differently."""

    cut: int = Field(description="The cut point: the truncated run ended with this candle.")
    bar: int = Field(description="The earliest candle (index in the period) that changed.")
    time: datetime = Field(description="That candle's open time.")
    name: str = Field(
        description="`position`, `strength`, `confidence` or one of the strategy's indicators."
    )
    full: float | None = Field(description="Its value in the run over the whole period.")
    truncated: float | None = Field(description="Its value in the truncated run (null: NaN).")
    bars_changed: int = Field(description="How many candles up to the cut changed this value.")


class LookaheadRead(AppModel):
    strategy_id: uuid.UUID
    strategy_type: str
    parameters: dict[str, Any]
    symbol: str
    timeframe: str
    first_open: datetime
    last_open: datetime
    candles: int = Field(description="The candles checked: the period's closed candles.")
    position_changes: int = Field(description="The entries and exits of the full run.")
    cut_points: int = Field(description="The position changes at which the run was cut.")
    repainting: bool = Field(description="Whether any value changed when the future was cut.")
    changed: list[str] = Field(description="The names of the values that changed.")
    findings_total: int
    findings: list[LookaheadFinding] = Field(
        description=f"The first {MAX_LOOKAHEAD_FINDINGS} findings, by cut point then name: "
        "one per cut point and value that changed."
    )
    summary: str = Field(description="The verdict in a sentence.")
