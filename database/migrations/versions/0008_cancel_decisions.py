"""Agents may cancel their open orders: a decision of type `cancel`, and its action.

- `agent_decisions.decision_type` admits `cancel` (a decision naming the agent's open
  orders to cancel).
- `agent_decisions.action_taken` admits `cancel` (what such a decision did).

Downgrading maps them to what the older vocabulary has: a cancel decision becomes an
`analysis` that did nothing (`none`), since the older schema cannot say it cancelled.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_TYPES_BEFORE = "'trade', 'hold', 'rebalance', 'analysis', 'risk_check'"
_TYPES_AFTER = f"{_TYPES_BEFORE}, 'cancel'"
_ACTIONS_BEFORE = "'buy', 'sell', 'rebalance', 'none'"
_ACTIONS_AFTER = "'buy', 'sell', 'rebalance', 'cancel', 'none'"


def _checks(types: str, actions: str) -> None:
    with op.batch_alter_table("agent_decisions") as batch:
        batch.drop_constraint(op.f("ck_agent_decisions_decision_type"), type_="check")
        batch.drop_constraint(op.f("ck_agent_decisions_action_taken"), type_="check")
        batch.create_check_constraint("decision_type", f"decision_type IN ({types})")
        batch.create_check_constraint("action_taken", f"action_taken IN ({actions})")


def upgrade() -> None:
    _checks(_TYPES_AFTER, _ACTIONS_AFTER)


def downgrade() -> None:
    op.execute("UPDATE agent_decisions SET action_taken = 'none' WHERE action_taken = 'cancel'")
    op.execute(
        "UPDATE agent_decisions SET decision_type = 'analysis' WHERE decision_type = 'cancel'"
    )
    _checks(_TYPES_BEFORE, _ACTIONS_BEFORE)
