"""Model answers kept for agent backtests, keyed by a hash of the exact prompt."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from database.orm.base import Base, CreatedAt, UUIDPrimaryKey
from database.orm.types import JSONType, Money


class ModelResponseCache(UUIDPrimaryKey, CreatedAt, Base):
    """One model's answer to one prompt, for a user's backtests: `prompt_hash` is the
    sha256 of (user, provider, model, the prompt as sent), so a backtest asking the
    same thing again reads the answer instead of paying for it."""

    __tablename__ = "model_response_cache"

    prompt_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    decision: Mapped[dict[str, Any]] = mapped_column(JSONType)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # What the call cost when it was made; None when that was unknown.
    cost: Mapped[Decimal | None] = mapped_column(Money)
