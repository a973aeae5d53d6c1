"""Agent backtests: `model_response_cache`, the model answers a backtest keeps.

One row per (user, provider, model, prompt), keyed by the sha256 of them
(`prompt_hash`): a backtest that asks the same prompt again reads the answer and pays
nothing (services/backtests/model_cache.py). Rows go with their user.

Downgrading drops the table and what it kept.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from database.orm.types import Money, UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "model_response_cache",
        sa.Column("prompt_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("decision", _JSON, nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", Money(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_model_response_cache_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_response_cache")),
        sa.UniqueConstraint("prompt_hash", name=op.f("uq_model_response_cache_prompt_hash")),
    )
    op.create_index(
        op.f("ix_model_response_cache_user_id"), "model_response_cache", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_model_response_cache_user_id"), table_name="model_response_cache")
    op.drop_table("model_response_cache")
