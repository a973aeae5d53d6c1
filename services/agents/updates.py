"""What an update may not change: the agent as created or as read is accepted back
(see models.agents.AgentUpdate), so its fixed and read-only fields pass when unchanged;
a changed fixed field is a 422 saying what to do instead."""

from __future__ import annotations

from typing import Any

from core.exceptions import ValidationFailedError
from database.orm import Agent, TradingAccount
from models.agents import AgentUpdate
from models.base import decimal_to_str


def check_fixed(agent: Agent, account: TradingAccount, body: AgentUpdate) -> None:
    """Fields that cannot change pass unchanged; changed, a 422 saying what to do."""
    problems: list[tuple[str, str, Any]] = []
    if body.id is not None and body.id != agent.id:
        problems.append(
            (
                "id",
                f"id {body.id} is not this agent's ({agent.id}): send an agent to its own URL",
                agent.id,
            )
        )
    if body.account_id is not None and body.account_id != account.id:
        problems.append(
            (
                "account_id",
                f"account_id {body.account_id} is not this agent's account "
                f"({account.id}): an agent keeps the account it was created with",
                account.id,
            )
        )
    if body.agent_type is not None and body.agent_type != agent.agent_type:
        problems.append(
            (
                "agent_type",
                f"agent_type cannot change after creation (this agent is "
                f"{agent.agent_type!r}): create a new agent of type {body.agent_type!r}",
                agent.agent_type,
            )
        )
    if body.paper_balance is not None and body.paper_balance != agent.paper_balance:
        problems.append(
            (
                "paper_balance",
                f"paper_balance cannot change after creation (this agent's account was "
                f"funded with {decimal_to_str(agent.paper_balance)}): create a new agent "
                "with the balance you want",
                decimal_to_str(agent.paper_balance),
            )
        )
    if problems:
        field, message, current = problems[0]
        raise ValidationFailedError(
            message,
            code="field_cannot_change",
            details={
                "field": field,
                "current": str(current),
                "fields": [name for name, _, _ in problems],
            },
        )
