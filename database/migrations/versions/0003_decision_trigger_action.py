"""Decisions say what started them and what they did, and can be pending.

- `trigger`: scheduled, manual (one cycle run on request), override (a decision given
  by a human) or coordination.
- `action_taken`: buy, sell, rebalance or none; the decision log filters on it.
- `decision_type` may be null: a cycle whose model gave no valid decision is logged
  as an error with no type, never dressed up as a hold.
- status `pending`: a trade's decision row is written before its order goes out, so
  the order can reference it; the row is closed when the order returns. One still
  pending after a restart was interrupted, and the agent service closes it as an error.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_STATUSES_BEFORE = "'executed', 'rejected', 'skipped', 'error'"
_STATUSES_AFTER = "'pending', 'executed', 'rejected', 'skipped', 'error'"


def upgrade() -> None:
    with op.batch_alter_table("agent_decisions") as batch:
        batch.add_column(
            sa.Column("trigger", sa.String(16), nullable=False, server_default="scheduled")
        )
        batch.add_column(sa.Column("action_taken", sa.String(16), nullable=True))
        batch.alter_column("decision_type", existing_type=sa.String(16), nullable=True)
        batch.drop_constraint(op.f("ck_agent_decisions_status"), type_="check")
        batch.create_check_constraint("status", f"status IN ({_STATUSES_AFTER})")
        batch.create_check_constraint(
            "trigger", "trigger IN ('scheduled', 'manual', 'override', 'coordination')"
        )
        batch.create_check_constraint(
            "action_taken", "action_taken IN ('buy', 'sell', 'rebalance', 'none')"
        )
    # Decisions logged before this revision: an executed trade placed an order.
    op.execute(
        "UPDATE agent_decisions SET action_taken = CASE "
        "WHEN status = 'executed' AND decision_type = 'trade' THEN side "
        "WHEN status = 'executed' AND decision_type = 'rebalance' THEN 'rebalance' "
        "ELSE 'none' END"
    )


def downgrade() -> None:
    op.execute("UPDATE agent_decisions SET status = 'error' WHERE status = 'pending'")
    op.execute("UPDATE agent_decisions SET decision_type = 'hold' WHERE decision_type IS NULL")
    with op.batch_alter_table("agent_decisions") as batch:
        batch.drop_constraint(op.f("ck_agent_decisions_action_taken"), type_="check")
        batch.drop_constraint(op.f("ck_agent_decisions_trigger"), type_="check")
        batch.drop_constraint(op.f("ck_agent_decisions_status"), type_="check")
        batch.create_check_constraint("status", f"status IN ({_STATUSES_BEFORE})")
        batch.alter_column("decision_type", existing_type=sa.String(16), nullable=False)
        batch.drop_column("action_taken")
        batch.drop_column("trigger")
