"""Operations: metrics, application logs, and the outbox of events clients must not miss."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from database.orm.base import Base, CreatedAt, UUIDPrimaryKey
from database.orm.constraints import one_of, partial
from database.orm.types import JSONType, Money, UTCDateTime
from models.enums import LogLevel


class SystemMetric(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "system_metrics"
    __table_args__ = (
        Index("ix_system_metrics_metric_name_created_at", "metric_name", "created_at"),
        Index("ix_system_metrics_created_at", "created_at"),
    )

    metric_type: Mapped[str] = mapped_column(String(64), index=True)
    metric_name: Mapped[str] = mapped_column(String(128))
    value: Mapped[Decimal] = mapped_column(Money)
    unit: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class AppLog(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "app_logs"
    __table_args__ = (
        one_of("level", LogLevel),
        Index("ix_app_logs_created_at", "created_at"),
        # The newest entries of one level (seed 001's idx_logs_level_created).
        Index("ix_app_logs_level_created_at", "level", "created_at"),
    )

    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    component: Mapped[str | None] = mapped_column(String(100), index=True)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    request_id: Mapped[str | None] = mapped_column(String(64))
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    stack_trace: Mapped[str | None] = mapped_column(Text)


class EventOutbox(UUIDPrimaryKey, CreatedAt, Base):
    """Events a client must not miss, numbered per channel so a reconnecting client
    replays everything after the last `seq` it saw. The channel is the numbering
    scope: a stream private to a user carries the user in its name."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        UniqueConstraint("channel", "seq"),
        CheckConstraint("seq > 0", name="seq_positive"),
        Index("ix_event_outbox_created_at", "created_at"),
        # The relay's queue: stored, not yet published to the bus.
        Index("ix_event_outbox_unpublished", "created_at", **partial("published_at IS NULL")),
    )

    channel: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Null for system-wide events.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
