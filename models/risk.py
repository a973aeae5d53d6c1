"""Risk as the API shows it: limits, alerts, the kill switch, metrics and stress tests.

Money and ratios of money are decimal strings; statistical estimates (VaR, volatility,
Sharpe, beta, correlation) are JSON numbers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, model_validator

from models.base import AppModel, DecimalStr, InputModel


class LimitType(StrEnum):
    """Units in services/risk/state.py's module doc and docs/risk.md."""

    DAILY_LOSS = "daily_loss"
    MAX_DRAWDOWN = "max_drawdown"
    POSITION_SIZE = "position_size"
    GROSS_EXPOSURE = "gross_exposure"
    LEVERAGE = "leverage"
    MAX_OPEN_ORDERS = "max_open_orders"
    ORDER_NOTIONAL = "order_notional"


# Types whose limit may name a symbol.
PER_SYMBOL_LIMITS = frozenset(
    {LimitType.POSITION_SIZE, LimitType.MAX_OPEN_ORDERS, LimitType.ORDER_NOTIONAL}
)


class AlertType(StrEnum):
    VAR_BREACH = "var_breach"
    DRAWDOWN_LIMIT = "drawdown_limit"
    POSITION_RISK = "position_risk"
    LIMIT_APPROACHED = "limit_approached"
    LIMIT_BREACHED = "limit_breached"
    KILL_SWITCH = "kill_switch"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class KillScope(StrEnum):
    ACCOUNT = "account"
    USER = "user"
    GLOBAL = "global"


# -- limits ----------------------------------------------------------------------------

_LIMIT_VALUE_RULES: dict[str, Any] = {"gt": 0, "lt": Decimal(10) ** 20, "allow_inf_nan": False}
_LIMIT_VALUE_TEXT = (
    "The limit, in the type's unit: the account's currency for daily_loss, "
    "position_size, gross_exposure and order_notional; a fraction of the peak in "
    "(0, 1] for max_drawdown (0.1 = 10%); a ratio for leverage (gross exposure / "
    "equity); a whole count for max_open_orders."
)


def check_limit_value(limit_type: LimitType, value: Decimal) -> None:
    """The type's unit allows the value (ValueError naming the rule otherwise)."""
    if limit_type is LimitType.MAX_DRAWDOWN and value > 1:
        raise ValueError("max_drawdown is a fraction of the peak in (0, 1]: 0.1 means 10%")
    if limit_type is LimitType.MAX_OPEN_ORDERS and value != value.to_integral_value():
        raise ValueError("max_open_orders is a whole number of orders")


class LimitCreate(InputModel):
    limit_type: LimitType = Field(description="What is limited (docs/risk.md).")
    limit_value: DecimalStr = Field(description=_LIMIT_VALUE_TEXT, **_LIMIT_VALUE_RULES)
    symbol: str | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description=(
            "Only for position_size, max_open_orders and order_notional: the symbol the "
            "limit is of. None: every symbol (each on its own for position_size)."
        ),
    )
    account_id: uuid.UUID | None = Field(
        default=None,
        description="The account it holds on. None: each of your accounts, on its own.",
    )
    kill_on_breach: bool = Field(
        default=False,
        description=(
            "When the risk monitor finds the account over this limit, engage the account's "
            "kill switch (cancel its orders, pause its agents; flatten with "
            "RISK_KILL_SWITCH_FLATTEN). Otherwise a breach only refuses orders and alerts."
        ),
    )
    is_active: bool = Field(default=True, description="An inactive limit is kept, not checked.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_limit_value(self.limit_type, self.limit_value)
        if self.symbol is not None and self.limit_type not in PER_SYMBOL_LIMITS:
            raise ValueError(
                f"{self.limit_type.value} is measured on the whole account: it takes no symbol"
            )
        return self


class LimitUpdate(InputModel):
    """Fields to change; the type, symbol and account of a limit are fixed."""

    limit_value: DecimalStr | None = Field(
        default=None, description=_LIMIT_VALUE_TEXT, **_LIMIT_VALUE_RULES
    )
    kill_on_breach: bool | None = None
    is_active: bool | None = None


class LimitRead(AppModel):
    id: uuid.UUID
    limit_type: LimitType
    limit_value: DecimalStr
    symbol: str | None
    account_id: uuid.UUID | None
    current_value: DecimalStr | None = Field(
        description="The measure as the risk monitor last saw it, in the limit's unit: null "
        "until measured, and always for order_notional (measured on each order)."
    )
    kill_on_breach: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


class LimitList(AppModel):
    items: list[LimitRead]
    count: int


# -- alerts ----------------------------------------------------------------------------


class AlertRead(AppModel):
    id: uuid.UUID
    alert_type: AlertType
    severity: Severity
    message: str
    data: dict[str, Any]
    account_id: uuid.UUID | None
    limit_id: uuid.UUID | None
    acknowledged: bool
    acknowledged_at: datetime | None
    created_at: datetime


class AlertAcknowledge(InputModel):
    ids: list[uuid.UUID] = Field(min_length=1, max_length=500, description="Alerts to acknowledge.")


class AlertAcknowledged(AppModel):
    items: list[AlertRead]
    count: int


# -- kill switch -----------------------------------------------------------------------


class KillSwitchEngage(InputModel):
    scope: KillScope = Field(
        default=KillScope.ACCOUNT,
        description="account (one account), user (all of yours) or global (every "
        "account of every user; admins only).",
    )
    account_id: uuid.UUID | None = Field(
        default=None, description="With scope account: which (default: your default account)."
    )
    reason: str = Field(min_length=1, max_length=500, description="Why: shown on every refusal.")
    flatten: bool = Field(
        default=False,
        description="Also sell every position at market after the orders are cancelled.",
    )

    @model_validator(mode="after")
    def _scope(self) -> Self:
        if self.account_id is not None and self.scope is not KillScope.ACCOUNT:
            raise ValueError(f"a {self.scope.value} kill switch takes no account_id")
        return self


class KillSwitchRead(AppModel):
    id: uuid.UUID
    scope: KillScope
    user_id: uuid.UUID | None
    account_id: uuid.UUID | None
    reason: str
    flatten: bool
    engaged_by: uuid.UUID | None = Field(description="Who engaged it; null: the risk monitor.")
    effects: dict[str, Any] = Field(
        description="What engaging it did: orders cancelled, positions flattened (and any "
        "that could not be), agents paused."
    )
    engaged_at: datetime
    released_at: datetime | None
    released_by: uuid.UUID | None


class KillSwitchList(AppModel):
    items: list[KillSwitchRead]
    count: int
