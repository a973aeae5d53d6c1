"""Budget pauses that lift themselves: an agent paused because its daily budget is
spent is active again when the budget window, the UTC day, rolls over.

The time is the agent's `paused_until` (kept across restarts); the scheduler asks each
tick which are due. A user's stop or start clears it, so a stop always wins.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import Agent
from database.repositories import agents as agents_repo
from models.enums import AgentStatus
from services.agents.context import owned_agent, utc_midnight

# The status reason of an agent whose budget pause lifted itself.
ROLLED_OVER = "daily budget window rolled over (UTC); resumed"


def next_utc_midnight(now: datetime) -> datetime:
    return utc_midnight(now) + timedelta(days=1)


class PausedAgents:
    """Budget-paused agents by id: their user and when their pause lifts."""

    def __init__(self) -> None:
        self._until: dict[uuid.UUID, tuple[uuid.UUID, datetime]] = {}

    def __len__(self) -> int:
        return len(self._until)

    async def load(self, session: AsyncSession) -> None:
        for agent in await agents_repo.paused_until_set(session):
            self.hold(agent.id, agent.user_id, agent.paused_until)

    def hold(self, agent_id: uuid.UUID, user_id: uuid.UUID, until: datetime | None) -> None:
        """Paused until `until`; None: not (or no longer) waiting for a rollover."""
        if until is None:
            self._until.pop(agent_id, None)
        else:
            self._until[agent_id] = (user_id, until)

    def clear(self) -> None:
        self._until.clear()

    def due(self, now: datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(agent, user) of the pauses lifted by `now`, forgotten here."""
        due = [(a, user) for a, (user, until) in self._until.items() if until <= now]
        for agent_id, _ in due:
            del self._until[agent_id]
        return due


async def lift(
    session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID, now: datetime
) -> tuple[Agent, bool]:
    """The agent, made active if it is still paused and its pause has lifted by `now`
    (True); as it is otherwise (stopped, started or resumed meanwhile: False)."""
    agent, _ = await owned_agent(session, user_id, agent_id)
    due = agent.paused_until is not None and agent.paused_until <= now
    if agent.status != AgentStatus.PAUSED.value or not due:
        return agent, False
    agent.status = AgentStatus.ACTIVE.value
    agent.status_reason = ROLLED_OVER
    agent.paused_until = None
    return agent, True
