"""Stress tests as the API shows them: which scenarios to run with which parameters, and
per scenario the PnL of each position and in total and the limits it would breach.

A shock is a price return as a fraction: -0.3 is a 30% fall, 0.1 a 10% rise; -1 takes
the price to 0 and anything below it is refused. Money, prices, shocks and ratios of
money are decimal strings (services/risk/stress.py has the rules and the defaults).
"""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from models.base import AppModel, DecimalStr, InputModel
from models.enums import AssetClass
from models.risk import LimitType


class ScenarioName(StrEnum):
    CRYPTO_CRASH = "crypto_crash"
    SINGLE_ASSET_COLLAPSE = "single_asset_collapse"
    VOLATILITY_SPIKE = "volatility_spike"
    CORRELATION_BREAKDOWN = "correlation_breakdown"
    WORST_DAY = "worst_day"
    CUSTOM = "custom"


BUILT_IN_SCENARIOS = tuple(name for name in ScenarioName if name is not ScenarioName.CUSTOM)

# The upper bounds keep a request's numbers inside the money context's range (an
# absurd shock would overflow it and become a 500 instead of a 422).
Shock = Annotated[
    DecimalStr,
    Field(ge=-1, le=100, allow_inf_nan=False, examples=["-0.25"]),
]
Sigmas = Annotated[DecimalStr, Field(gt=0, le=100, allow_inf_nan=False, examples=["3"])]
Symbol = Annotated[str, Field(min_length=1, max_length=32, examples=["BTC/USD"])]


class CryptoCrashParams(InputModel):
    shock: Shock | None = Field(
        default=None, description="Return of every crypto holding; default -0.3."
    )
    equity_shock: Shock | None = Field(
        default=None, description="Return of every equity holding; default 0."
    )


class SingleAssetCollapseParams(InputModel):
    symbol: Symbol | None = Field(
        default=None,
        description="The holding that collapses; default the largest by value. A symbol "
        "the account does not hold has no effect (the result says so).",
    )
    shock: Shock | None = Field(default=None, description="Its return; default -0.9.")


class VolatilitySpikeParams(InputModel):
    sigmas: Sigmas | None = Field(
        default=None,
        description="How many standard deviations of its daily returns each holding "
        "falls; default 3.",
    )


class CustomShock(InputModel):
    """One shock, of a symbol or of an asset class: a symbol's shock wins over its class's."""

    symbol: Symbol | None = Field(default=None, description="Exactly one of symbol, asset_class.")
    asset_class: AssetClass | None = Field(default=None, description="Every holding of the class.")
    shock: Shock = Field(description="The price return, e.g. -0.25; not below -1.")

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.symbol is None) == (self.asset_class is None):
            raise ValueError("give exactly one of symbol and asset_class")
        return self


class StressTestRequest(InputModel):
    account_id: uuid.UUID | None = Field(
        default=None, description="The account to stress; null: the user's default account."
    )
    scenarios: list[ScenarioName] | None = Field(
        default=None,
        min_length=1,
        description="Which scenarios to run, in this order; null: every built-in one, and "
        "custom too when custom shocks are given.",
    )
    crypto_crash: CryptoCrashParams = Field(default_factory=CryptoCrashParams)
    single_asset_collapse: SingleAssetCollapseParams = Field(
        default_factory=SingleAssetCollapseParams
    )
    volatility_spike: VolatilitySpikeParams = Field(default_factory=VolatilitySpikeParams)
    custom: list[CustomShock] = Field(
        default_factory=list,
        max_length=200,
        description="The custom scenario's shocks, per symbol or per asset class; a holding "
        "no shock names does not move.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        chosen = self.scenarios
        if chosen is not None and len(set(chosen)) != len(chosen):
            raise ValueError("a scenario is listed twice")
        runs_custom = ScenarioName.CUSTOM in chosen if chosen is not None else bool(self.custom)
        if runs_custom and not self.custom:
            raise ValueError("the custom scenario needs at least one custom shock")
        if self.custom and not runs_custom:
            raise ValueError("custom shocks are given but the custom scenario is not run")
        # Parameters of a scenario that does not run would be silently ignored: refuse them,
        # as unknown fields are.
        for name in (
            ScenarioName.CRYPTO_CRASH,
            ScenarioName.SINGLE_ASSET_COLLAPSE,
            ScenarioName.VOLATILITY_SPIKE,
        ):
            if chosen is not None and name not in chosen and name.value in self.model_fields_set:
                raise ValueError(f"{name.value} parameters are given but it is not run")
        targets = [(s.symbol, s.asset_class) for s in self.custom]
        if len(set(targets)) != len(targets):
            raise ValueError("two custom shocks name the same symbol or asset class")
        return self

    def scenario_names(self) -> list[ScenarioName]:
        """The scenarios to run, defaults applied."""
        if self.scenarios is not None:
            return list(self.scenarios)
        return [*BUILT_IN_SCENARIOS, *([ScenarioName.CUSTOM] if self.custom else [])]


class StressPositionRead(AppModel):
    symbol: str
    asset_class: AssetClass
    quantity: DecimalStr
    shock: DecimalStr = Field(description="The price return the scenario applied.")
    price_before: DecimalStr
    price_after: DecimalStr = Field(description="Price x (1 + shock), floored at 0.")
    value_before: DecimalStr
    value_after: DecimalStr
    pnl: DecimalStr = Field(description="value_after - value_before.")
    history_fallback: bool = Field(
        description="The holding lacked the price history the scenario needs: a default "
        "for its asset class was used (note says which)."
    )
    note: str | None = Field(description="How the shock was found, when it is not given.")


class StressBreachRead(AppModel):
    limit_id: uuid.UUID
    limit_type: LimitType
    symbol: str | None = Field(description="The limit's symbol; null: the account's or every.")
    limit_value: DecimalStr
    measure_after: DecimalStr | None = Field(
        description="The limit's measure after the shock, in its units (docs/risk.md)."
    )
    utilisation_after: DecimalStr | None = Field(description="measure_after / limit_value.")
    already_breached: bool = Field(description="The account is over it before the shock too.")
    kill_on_breach: bool = Field(description="Breaching it would trip the kill switch.")
    reason: str


class ScenarioResultRead(AppModel):
    name: ScenarioName
    description: str = Field(description="What moved, in one line.")
    parameters: dict[str, str] = Field(description="What it ran with, defaults filled in.")
    replayed_day: date | None = Field(
        description="worst_day: the day replayed; null for the others, or when the "
        "holdings' histories share no day."
    )
    equity_before: DecimalStr
    equity_after: DecimalStr
    pnl: DecimalStr = Field(description="Sum of the positions' PnL.")
    pnl_fraction: DecimalStr | None = Field(
        description="pnl / equity_before; null when equity_before is not positive."
    )
    positions: list[StressPositionRead]
    breaches: list[StressBreachRead] = Field(
        description="The limits the account would be over after the shock."
    )
    notes: list[str] = Field(
        description="What the scenario could not do as asked: shocks of symbols not held, "
        "missing history, no day to replay."
    )


class StressTestRead(AppModel):
    account_id: uuid.UUID
    equity: DecimalStr = Field(description="The account's equity before any shock.")
    results: list[ScenarioResultRead] = Field(description="One per scenario, in request order.")
