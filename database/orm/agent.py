"""AI agents, every decision they take, every model call behind it, and their files."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from database.orm.base import Base, CreatedAt, Timestamps, UUIDPrimaryKey
from database.orm.constraints import non_negative, num, one_of, partial, positive, unit_interval
from database.orm.types import JSONType, Money, UTCDateTime
from database.orm.user import UserOwned
from models.enums import (
    ActionTaken,
    AgentStatus,
    DecisionStatus,
    DecisionTrigger,
    DecisionType,
    FileProcessingStatus,
    LLMProvider,
    OrderSide,
)

if TYPE_CHECKING:
    from database.orm.trading import TradingAccount


_ORDER_TYPES = ("market", "limit", "stop", "stop_limit")


class Agent(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    """An agent is soft-deleted (`deleted_at`), so its decisions and ledger stay readable."""

    __tablename__ = "agents"
    __table_args__ = (
        one_of("status", AgentStatus),
        one_of("llm_provider", LLMProvider),
        unit_interval("risk_tolerance"),
        CheckConstraint(
            f"{num('max_position_pct')} > 0 AND {num('max_position_pct')} <= 100",
            name="max_position_pct_range",
        ),
        *positive("paper_balance", "decision_interval_seconds", "daily_token_budget"),
        *non_negative("daily_cost_budget"),
        CheckConstraint("deleted_at IS NULL OR status <> 'active'", name="deleted_not_active"),
        # A name is unique among a user's live agents; a deleted agent frees its name.
        Index(
            "uq_agents_user_id_name_live",
            "user_id",
            "name",
            unique=True,
            **partial("deleted_at IS NULL"),
        ),
    )

    name: Mapped[str] = mapped_column(String(100))
    agent_type: Mapped[str] = mapped_column(String(50), default="trading", index=True)
    status: Mapped[str] = mapped_column(String(16), default=AgentStatus.INACTIVE.value, index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    personality: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Names of the user's strategies, handed to the model as prompt input.
    strategies: Mapped[list[str]] = mapped_column(JSONType, default=list)
    symbols: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Starting cash of the agent's paper account.
    paper_balance: Mapped[Decimal] = mapped_column(Money, default=Decimal(100))
    risk_tolerance: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.5"))
    # Largest position, in percent of the account's equity.
    max_position_pct: Mapped[Decimal] = mapped_column(Money, default=Decimal(10))
    llm_provider: Mapped[str] = mapped_column(String(32), default=LLMProvider.LOCAL.value)
    llm_model: Mapped[str] = mapped_column(String(200), default="rule-based")
    decision_interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    # Most the agent's model calls may cost per UTC day, in USD.
    daily_cost_budget: Mapped[Decimal] = mapped_column(Money, default=Decimal(1))
    # Most prompt + completion tokens per UTC day; null: none. What lets an agent run a
    # model whose cost is unknown (no price).
    daily_token_budget: Mapped[int | None] = mapped_column(Integer)
    # Models asked, in order, when the main one fails: [{"provider", "model"}], at most 3.
    llm_fallbacks: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    # A budget pause lifts itself then (the next UTC midnight); null otherwise.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    accounts: Mapped[list[TradingAccount]] = relationship(
        back_populates="agent", lazy="raise", passive_deletes=True
    )


class LLMCall(UUIDPrimaryKey, UserOwned, CreatedAt, Base):
    """One model call exactly as sent and received, kept for audit and cost accounting."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        one_of("provider", LLMProvider),
        *non_negative("prompt_tokens", "completion_tokens", "cost", "latency_ms"),
        # Sums an agent's spend over a day for its budget.
        Index("ix_llm_calls_agent_id_created_at", "agent_id", "created_at"),
    )

    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    raw_response: Mapped[str | None] = mapped_column(Text)
    parsed: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Null: unknown (a model without a price), never taken as free.
    cost: Mapped[Decimal | None] = mapped_column(Money)
    latency_ms: Mapped[int | None] = mapped_column(Integer)

    agent: Mapped[Agent | None] = relationship(lazy="raise")


class AgentDecision(UUIDPrimaryKey, UserOwned, CreatedAt, Base):
    __tablename__ = "agent_decisions"
    __table_args__ = (
        one_of("decision_type", DecisionType),
        one_of("status", DecisionStatus),
        one_of("trigger", DecisionTrigger),
        one_of("action_taken", ActionTaken),
        one_of("side", OrderSide),
        one_of("order_type", _ORDER_TYPES),
        unit_interval("confidence_score"),
        *positive("quantity", "price"),
        *non_negative("prompt_tokens", "completion_tokens", "cost", "execution_time_ms"),
        # An agent's decision log, newest first.
        Index("ix_agent_decisions_agent_id_created_at", "agent_id", "created_at"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    # Null when the model gave no valid decision (status error): never shown as a hold.
    decision_type: Mapped[str | None] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(16), default=DecisionTrigger.SCHEDULED.value)
    # buy / sell / rebalance when an order went out, none otherwise; null while pending.
    action_taken: Mapped[str | None] = mapped_column(String(16))
    symbol: Mapped[str | None] = mapped_column(String(32))
    side: Mapped[str | None] = mapped_column(String(4))
    quantity: Mapped[Decimal | None] = mapped_column(Money)
    # Limit price the model asked for, if any.
    price: Mapped[Decimal | None] = mapped_column(Money)
    order_type: Mapped[str | None] = mapped_column(String(16))
    confidence_score: Mapped[Decimal | None] = mapped_column(Money)
    reasoning: Mapped[str] = mapped_column(Text)
    market_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    execution_time_ms: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Its model call's cost; null: unknown.
    cost: Mapped[Decimal | None] = mapped_column(Money)
    # Which provider and model gave the answer (a fallback's, when one answered): copied
    # from the model call, as tokens and cost are, so the log reads without the calls.
    answered_provider: Mapped[str | None] = mapped_column(String(32))
    answered_model: Mapped[str | None] = mapped_column(String(200))
    llm_call_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("llm_calls.id", ondelete="SET NULL"), index=True
    )
    # Shared by the decisions several agents took together in one coordination round.
    coordination_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)

    agent: Mapped[Agent] = relationship(lazy="raise")
    llm_call: Mapped[LLMCall | None] = relationship(lazy="raise")

    @property
    def answered_by(self) -> dict[str, str] | None:
        if self.answered_provider is None or self.answered_model is None:
            return None
        return {"provider": self.answered_provider, "model": self.answered_model}


class AgentFile(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    """A document uploaded for agents to read; the bytes live at `storage_path`."""

    __tablename__ = "agent_files"
    __table_args__ = (
        one_of("processing_status", FileProcessingStatus),
        *non_negative("size_bytes"),
    )

    # Null: shared by all the user's agents.
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    storage_path: Mapped[str] = mapped_column(String(1024), unique=True)
    # Set only when the file is served from elsewhere; otherwise the API serves it.
    url: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    agent_ingested: Mapped[bool] = mapped_column(Boolean, default=False)
    ingested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processing_status: Mapped[str] = mapped_column(
        String(16), default=FileProcessingStatus.PENDING.value
    )
    processing_error: Mapped[str | None] = mapped_column(Text)
    file_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    agent: Mapped[Agent | None] = relationship(lazy="raise")
