"""Queries on agents' model calls. Flush, never commit.

By agent id or call id the caller has already authorised: the agent was read as the
user's in the same session, the call is the one its decision references.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import LLMCall

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Usage:
    """An agent's model calls over a period: what those of known cost cost, how many
    had no known cost, and the tokens of all of them."""

    cost: Decimal
    unknown_cost_calls: int
    tokens: int


async def usage_since(session: AsyncSession, agent_id: uuid.UUID, *, since: datetime) -> Usage:
    """The agent's model calls from `since` on. By an authorised agent id."""
    # Summed in Python: SQLite keeps money as text (database/orm/types.py).
    query = select(LLMCall.cost, LLMCall.prompt_tokens, LLMCall.completion_tokens).where(
        LLMCall.agent_id == agent_id, LLMCall.created_at >= since
    )
    cost, unknown, tokens = _ZERO, 0, 0
    for call_cost, prompt, completion in await session.execute(query):
        if call_cost is None:
            unknown += 1
        else:
            cost += call_cost
        tokens += prompt + completion
    return Usage(cost, unknown, tokens)


async def find(session: AsyncSession, call_id: uuid.UUID) -> LLMCall | None:
    """The call by its primary key, already authorised (its decision's)."""
    return await session.get(LLMCall, call_id)
