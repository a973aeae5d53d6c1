"""An agent's last decision time is read from its decisions, not kept on the agent.

`agents.last_decision_at` was a copy of the newest `agent_decisions.created_at`,
updated by every cycle: one more statement per decision, and a row lock on the agent
inside every trade's transaction. The index on (agent_id, created_at) answers the same
question directly.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("last_decision_at")


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("last_decision_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE agents SET last_decision_at = "
        "(SELECT max(created_at) FROM agent_decisions WHERE agent_decisions.agent_id = agents.id)"
    )
