"""An agent's calibration as the API returns it (computed by services/agents/calibration.py)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from models.base import AppModel, DecimalStr


class CalibrationBucket(AppModel):
    """Trades with confidence in [low, high); the last bucket includes 1."""

    low: DecimalStr
    high: DecimalStr
    trades: int
    wins: int
    win_rate: DecimalStr | None
    mean_confidence: DecimalStr | None


class CalibrationOutcome(AppModel):
    """One order a decision placed, judged."""

    decision_id: uuid.UUID
    order_id: uuid.UUID
    symbol: str
    side: Literal["buy", "sell"]
    confidence: DecimalStr
    outcome: Literal["realised", "horizon"] = Field(
        description="`realised`: the PnL of the position the buy opened, from its fills "
        "and the later sells that closed it (first in, first out), net of both sides' "
        "fees; `horizon`: the price a horizon after the order against its average fill, "
        "fees included (a sell, or a buy nothing has closed yet)."
    )
    won: bool = Field(description="`result` is above 0.")
    result: DecimalStr = Field(
        description="`realised`: the PnL in the quote currency of the part closed; "
        "`horizon`: the move per unit in the trade's favour, net of its fee per unit."
    )
    closed_quantity: DecimalStr | None = Field(
        description="`realised`: how much of the quantity bought has been sold since "
        "(the PnL is of that part); None for `horizon`."
    )


class Calibration(AppModel):
    trades: int
    wins: int
    realised: int = Field(description="Outcomes judged by their realised PnL.")
    horizon: int = Field(description="Outcomes judged by the price a horizon later.")
    buckets: list[CalibrationBucket]
    brier_score: DecimalStr | None
    # Confidence >= 0.7 and < 0.5.
    high_confidence_win_rate: DecimalStr | None
    low_confidence_win_rate: DecimalStr | None
    informative: bool | None
    summary: str
    outcomes: list[CalibrationOutcome] = Field(
        default_factory=list, description="Every judged order, oldest first."
    )
