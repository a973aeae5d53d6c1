"""An account's risk metrics as the API shows and `risk_metrics.metrics` stores them.

Money (equity, cash, exposure, VaR and ES in the account's currency, per-position
figures) is a decimal string, quantized to 8 places; the statistical estimates
(fractions, volatility, ratios, correlations) are JSON numbers. A figure that is
undefined on the data is null, and `notes` says why. What each figure is made of, and
the choices behind it, is in docs/metrics.md ("An account's stored metrics").
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import Field

from models.base import AppModel, DecimalStr
from models.enums import AssetClass


class LossEstimate(AppModel):
    """VaR and expected shortfall at one confidence and horizon: positive losses."""

    var: DecimalStr | None = Field(
        description="Value at risk in the account's currency: the loss exceeded on "
        "(1 - confidence) of days (or horizons). Negative when even the tail is a gain."
    )
    var_fraction: float | None = Field(description="`var` over equity; null when equity <= 0.")
    es: DecimalStr | None = Field(
        description="Expected shortfall in the account's currency: the mean loss in the tail."
    )
    es_fraction: float | None = Field(description="`es` over equity; null when equity <= 0.")


class TailRiskAtLevel(AppModel):
    one_day: LossEstimate = Field(description="Over one day.")
    horizon: LossEstimate = Field(
        description="Over `horizon_days`: the one-day figures times sqrt(horizon_days)."
    )


class TailRiskRead(AppModel):
    """Historical (the scenario PnL's own quantile and tail) and parametric (a normal fit
    of its mean and standard deviation) VaR and ES, at 95% and 99%."""

    historical_95: TailRiskAtLevel
    historical_99: TailRiskAtLevel
    parametric_95: TailRiskAtLevel
    parametric_99: TailRiskAtLevel


class CorrelationRead(AppModel):
    symbols: list[str] = Field(description="The holdings with price history, by symbol.")
    matrix: list[list[float | None]] = Field(
        description="Pearson correlation of their daily returns, rows and columns in the "
        "order of `symbols`; null for a holding whose returns never vary."
    )


class PositionRiskRead(AppModel):
    symbol: str
    asset_class: AssetClass | None = Field(description="Null: the market does not list it.")
    quantity: DecimalStr
    value: DecimalStr = Field(
        description="Quantity times the mark (at cost when the symbol has no mark)."
    )
    weight: float | None = Field(description="Value over equity; null when equity <= 0.")
    volatility: float | None = Field(
        description="Annualised standard deviation of the symbol's daily price returns."
    )
    standalone_var: DecimalStr | None = Field(
        description="One-day historical 95% VaR of this holding held alone."
    )
    component_var: DecimalStr | None = Field(
        description="Its share of the portfolio's one-day historical 95% VaR (Euler "
        "allocation: the shares sum to the portfolio's VaR; negative is a hedge)."
    )
    component_es: DecimalStr | None = Field(
        description="Its share of the portfolio's one-day historical 95% ES (the shares "
        "sum to it): minus its mean PnL on the tail days."
    )


class RiskMetricsRead(AppModel):
    """Risk of an account's holdings now (or of all the user's active accounts together),
    from today's positions at the mark and their stored daily closes."""

    account_id: uuid.UUID | None = Field(
        description="The account measured; null: all the user's active accounts together."
    )
    account_ids: list[uuid.UUID] = Field(description="The accounts whose holdings were summed.")
    calculated_at: datetime
    currency: str = Field(description="The accounts' base currency: every money figure is in it.")
    equity: DecimalStr = Field(description="Cash plus positions at the mark.")
    cash: DecimalStr = Field(description="Free plus locked balance of the base currency.")
    periods_per_year: int | None = Field(
        description="Annualisation of daily figures: 365 when any holding is crypto, else "
        "252; null without a holding that has price history."
    )
    history_days: int = Field(
        description="Daily returns (scenarios) used: consecutive closes the holdings share, "
        "at most the configured history."
    )
    history_start: date | None = Field(description="Day of the first close used.")
    history_end: date | None = Field(
        description="Day of the last close used (the last closed day)."
    )
    horizon_days: int = Field(description="The horizon of the `horizon` VaR and ES.")
    tail: TailRiskRead = Field(description="VaR and ES of today's holdings.")
    volatility: float | None = Field(
        description="Annualised sample standard deviation of the holdings' daily portfolio "
        "returns: each day's scenario PnL over equity now."
    )
    max_drawdown: float | None = Field(
        description="Largest fall from a running peak of those portfolio returns compounded, "
        "a fraction of the peak (today's holdings and cash held through the history)."
    )
    sharpe_ratio: float | None = Field(
        description="Annualised, risk-free rate 0, of the same portfolio returns."
    )
    sortino_ratio: float | None = Field(
        description="Annualised, target return 0, of the same portfolio returns."
    )
    beta: float | None = Field(
        description="Of the same portfolio returns against the benchmark's daily returns, "
        "on the days both have."
    )
    benchmark_symbol: str = Field(description="The benchmark beta is measured against.")
    gross_exposure: DecimalStr = Field(description="Sum of the positions' absolute values.")
    net_exposure: DecimalStr = Field(description="Sum of the positions' signed values.")
    concentration: float | None = Field(
        description="The largest position's share of gross exposure; null without exposure."
    )
    correlation: CorrelationRead
    position_risks: list[PositionRiskRead] = Field(description="Per holding, by symbol.")
    notes: list[str] = Field(
        description="Why a figure is null, or what it leaves out (a holding without history)."
    )
