"""Trading strategies a user's agents can follow."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from database.orm.base import Base, Timestamps, UUIDPrimaryKey
from database.orm.constraints import one_of
from database.orm.types import JSONType
from database.orm.user import UserOwned
from models.enums import RiskLevel, StrategyType


class Strategy(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    __tablename__ = "strategies"
    __table_args__ = (
        UniqueConstraint("user_id", "name"),
        one_of("strategy_type", StrategyType),
        one_of("risk_level", RiskLevel),
    )

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    strategy_type: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    risk_level: Mapped[str] = mapped_column(String(16), default=RiskLevel.MEDIUM.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    performance_metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    backtest_results: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
