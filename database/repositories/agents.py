"""Queries on agents (with their paper accounts). Flush, never commit.

Every query takes the owner's `user_id` except `active_agents`, the scheduler's resume
over every user's active agents, and `equity_at`, which reads by an account id the
caller has already authorised (it came with the agent from `find_owned`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import NotFoundError
from database.orm import Agent, TradingAccount
from models.enums import AgentStatus


async def find_owned(
    session: AsyncSession, agent_id: uuid.UUID, *, user_id: uuid.UUID
) -> tuple[Agent, TradingAccount]:
    """The user's live (not deleted) agent and its account, reloaded from the row.

    Another user's agent, or a deleted one, is "not found". Raises NotFoundError.
    """
    query = (
        select(Agent, TradingAccount)
        .join(TradingAccount, TradingAccount.agent_id == Agent.id)
        .where(Agent.id == agent_id, Agent.user_id == user_id, Agent.deleted_at.is_(None))
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFoundError(f"agent {agent_id} not found", details={"agent_id": str(agent_id)})
    return row[0], row[1]


async def exists(session: AsyncSession, agent_id: uuid.UUID, *, user_id: uuid.UUID) -> bool:
    """Whether the agent is the user's, deleted ones included (their history stays
    readable)."""
    query = select(Agent.id).where(Agent.id == agent_id, Agent.user_id == user_id)
    return (await session.execute(query)).first() is not None


async def live_agents(
    session: AsyncSession, *, user_id: uuid.UUID
) -> list[tuple[Agent, TradingAccount]]:
    """The user's agents that are not deleted, with their accounts, oldest first."""
    query = (
        select(Agent, TradingAccount)
        .join(TradingAccount, TradingAccount.agent_id == Agent.id)
        .where(Agent.user_id == user_id, Agent.deleted_at.is_(None))
        .order_by(Agent.created_at, Agent.id)
    )
    return [(agent, account) for agent, account in (await session.execute(query)).all()]


async def active_agents(session: AsyncSession) -> list[Agent]:
    """Every user's active, live agents: internal, for the scheduler's resume at start."""
    query = select(Agent).where(
        Agent.status == AgentStatus.ACTIVE.value, Agent.deleted_at.is_(None)
    )
    return list((await session.execute(query)).scalars())


async def paused_until_set(session: AsyncSession) -> list[Agent]:
    """Every user's paused, live agents with a time their pause lifts itself: internal,
    for the scheduler at start."""
    query = select(Agent).where(
        Agent.status == AgentStatus.PAUSED.value,
        Agent.paused_until.is_not(None),
        Agent.deleted_at.is_(None),
    )
    return list((await session.execute(query)).scalars())


async def name_taken(
    session: AsyncSession,
    name: str,
    *,
    user_id: uuid.UUID,
    except_agent_id: uuid.UUID | None = None,
) -> bool:
    """Whether another live agent of the user's (not `except_agent_id`) has `name`."""
    query = select(Agent.id).where(
        Agent.user_id == user_id, Agent.name == name, Agent.deleted_at.is_(None)
    )
    if except_agent_id is not None:
        query = query.where(Agent.id != except_agent_id)
    return (await session.execute(query)).first() is not None


async def add(session: AsyncSession, agent: Agent) -> Agent:
    """The new agent, inserted (flushed) so its account can reference it."""
    session.add(agent)
    await session.flush()
    return agent


async def running_on_accounts(
    session: AsyncSession, account_ids: Sequence[uuid.UUID] | None
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(user_id, agent_id) of the live agents trading these accounts (None: every
    account) that are active or paused (a budget pause would lift itself at midnight):
    internal, for a kill switch."""
    running = (AgentStatus.ACTIVE.value, AgentStatus.PAUSED.value)
    query = (
        select(Agent.user_id, Agent.id)
        .join(TradingAccount, TradingAccount.agent_id == Agent.id)
        .where(Agent.status.in_(running), Agent.deleted_at.is_(None))
    )
    if account_ids is not None:
        query = query.where(TradingAccount.id.in_(account_ids))
    return [(user_id, agent_id) for user_id, agent_id in (await session.execute(query)).all()]
