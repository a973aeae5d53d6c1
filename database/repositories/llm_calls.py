"""Queries on agents' model calls. Flush, never commit.

By agent id or call id the caller has already authorised: the agent was read as the
user's in the same session, the call is the one its decision references.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import LLMCall

_ZERO = Decimal(0)


async def cost_since(session: AsyncSession, agent_id: uuid.UUID, *, since: datetime) -> Decimal:
    """What the agent's model calls from `since` on cost. By an authorised agent id."""
    # Summed in Python: SQLite keeps money as text (database/orm/types.py).
    query = select(LLMCall.cost).where(LLMCall.agent_id == agent_id, LLMCall.created_at >= since)
    return sum((await session.execute(query)).scalars(), _ZERO)


async def find(session: AsyncSession, call_id: uuid.UUID) -> LLMCall | None:
    """The call by its primary key, already authorised (its decision's)."""
    return await session.get(LLMCall, call_id)
