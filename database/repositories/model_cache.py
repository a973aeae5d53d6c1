"""Queries on the model answers kept for agent backtests. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.locking import upsert
from database.orm.model_cache import ModelResponseCache
from database.orm.types import utcnow


async def find_many(
    session: AsyncSession, hashes: Sequence[str], *, user_id: uuid.UUID
) -> dict[str, ModelResponseCache]:
    """The user's kept answers among `hashes`, by hash."""
    if not hashes:
        return {}
    query = select(ModelResponseCache).where(
        ModelResponseCache.user_id == user_id, ModelResponseCache.prompt_hash.in_(list(hashes))
    )
    return {row.prompt_hash: row for row in (await session.scalars(query)).all()}


async def keep(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    prompt_hash: str,
    provider: str,
    model: str,
    decision: dict[str, Any],
    prompt_tokens: int,
    completion_tokens: int,
    cost: Decimal | None,
) -> None:
    """Keeps the answer. Two runs that asked the same at once both write it: the later
    answer replaces the earlier one (the same prompt, so the same question)."""
    values = {
        "id": uuid.uuid4(),
        "prompt_hash": prompt_hash,
        "user_id": user_id,
        "provider": provider,
        "model": model,
        "decision": decision,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": cost,
        "created_at": utcnow(),
    }
    statement = upsert(session, ModelResponseCache.__table__, ("prompt_hash",), [values])
    await session.execute(statement, [values])
    await session.flush()
