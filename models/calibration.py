"""An agent's calibration as the API returns it (computed by services/agents/calibration.py)."""

from __future__ import annotations

from models.base import AppModel, DecimalStr


class CalibrationBucket(AppModel):
    """Trades with confidence in [low, high); the last bucket includes 1."""

    low: DecimalStr
    high: DecimalStr
    trades: int
    wins: int
    win_rate: DecimalStr | None
    mean_confidence: DecimalStr | None


class Calibration(AppModel):
    trades: int
    wins: int
    buckets: list[CalibrationBucket]
    brier_score: DecimalStr | None
    # Confidence >= 0.7 and < 0.5.
    high_confidence_win_rate: DecimalStr | None
    low_confidence_win_rate: DecimalStr | None
    informative: bool | None
    summary: str
