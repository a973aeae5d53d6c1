"""A model call's cost may be unknown; agents learn a token budget, a resume time for a
budget pause and a fallback chain; a decision names who answered.

- `llm_calls.cost` and `agent_decisions.cost` become nullable: NULL is an unknown cost
  (a model without a price), which was stored as 0 and so never counted against a
  budget. Existing zeros stay: which of them were unknown cannot be told any more.
- `agents.daily_token_budget`: most prompt + completion tokens per UTC day (NULL: none).
- `agents.paused_until`: when a budget pause lifts itself (the next UTC midnight).
- `agents.llm_fallbacks`: the models asked, in order, when the main one fails (JSON
  list of {provider, model}; existing agents: none).
- `agent_decisions.answered_provider` / `answered_model`: the provider and model that
  answered, copied from the decision's model call (filled in for existing rows).

On SQLite a column's NOT NULL changes only by rebuilding its table (batch mode); the
migrations run with foreign keys off (database/migrate.py), so dropping the old table
leaves the rows referring to it alone. `agents` gains and loses its columns in place.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from database.orm.types import Money, UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BUDGET_CHECK = "ck_agents_daily_token_budget_positive"


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def _cost_nullable(nullable: bool) -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.alter_column("cost", existing_type=Money(), nullable=nullable)
    with op.batch_alter_table("agent_decisions") as batch:
        batch.alter_column("cost", existing_type=Money(), nullable=nullable)


def upgrade() -> None:
    _cost_nullable(True)
    op.add_column("agent_decisions", sa.Column("answered_provider", sa.String(32), nullable=True))
    op.add_column("agent_decisions", sa.Column("answered_model", sa.String(200), nullable=True))
    op.execute(
        "UPDATE agent_decisions SET "
        "answered_provider = (SELECT provider FROM llm_calls "
        "WHERE llm_calls.id = agent_decisions.llm_call_id), "
        "answered_model = (SELECT model FROM llm_calls "
        "WHERE llm_calls.id = agent_decisions.llm_call_id) "
        "WHERE llm_call_id IS NOT NULL"
    )
    # In place on both databases, its CHECK with it (see the module docstring).
    op.execute(
        f"ALTER TABLE agents ADD COLUMN daily_token_budget INTEGER CONSTRAINT {_BUDGET_CHECK} "
        "CHECK (CAST(daily_token_budget AS NUMERIC) > 0)"
    )
    op.add_column("agents", sa.Column("paused_until", UTCDateTime(), nullable=True))
    op.add_column("agents", sa.Column("llm_fallbacks", _JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    for column in ("llm_fallbacks", "paused_until", "daily_token_budget"):
        # Native DROP COLUMN on both (SQLite 3.35+): the column's own CHECK goes with it.
        op.execute(f"ALTER TABLE agents DROP COLUMN {column}")
    for column in ("answered_model", "answered_provider"):
        op.execute(f"ALTER TABLE agent_decisions DROP COLUMN {column}")
    # Before 0007 an unknown cost was stored as 0.
    op.execute("UPDATE agent_decisions SET cost = '0' WHERE cost IS NULL")
    op.execute("UPDATE llm_calls SET cost = '0' WHERE cost IS NULL")
    _cost_nullable(False)
