"""database/repositories/model_cache.py on both databases: answers found by hash for
their user only, a second keep of the same hash replaces the first, money exact."""

from __future__ import annotations

import uuid
from decimal import Decimal

from database.connection import Database
from database.repositories import model_cache
from tests.factories import create_user

ANSWER = {"decision_type": "hold", "reasoning": "Flat.", "confidence_score": "0.5"}


async def _keep(db: Database, user_id: uuid.UUID, key: str, cost: str | None, **extra: str) -> None:
    async with db.transaction() as session:
        await model_cache.keep(
            session,
            user_id=user_id,
            prompt_hash=key,
            provider="openai",
            model="gpt-4o-mini",
            decision={**ANSWER, **extra},
            prompt_tokens=321,
            completion_tokens=45,
            cost=None if cost is None else Decimal(cost),
        )


async def test_a_kept_answer_is_found_by_its_hash(db: Database) -> None:
    user = await create_user(db)
    await _keep(db, user.id, "a" * 64, "0.000075150000000001")
    await _keep(db, user.id, "b" * 64, None)

    async with db.read() as session:
        found = await model_cache.find_many(
            session, ["a" * 64, "b" * 64, "c" * 64], user_id=user.id
        )

    assert set(found) == {"a" * 64, "b" * 64}
    assert found["a" * 64].cost == Decimal("0.000075150000000001")
    assert found["a" * 64].decision == ANSWER
    assert (found["a" * 64].prompt_tokens, found["a" * 64].completion_tokens) == (321, 45)
    assert found["b" * 64].cost is None


async def test_another_users_answers_are_not_found(db: Database) -> None:
    owner, other = await create_user(db), await create_user(db)
    await _keep(db, owner.id, "a" * 64, "0.01")

    async with db.read() as session:
        assert await model_cache.find_many(session, ["a" * 64], user_id=other.id) == {}
        assert await model_cache.find_many(session, [], user_id=owner.id) == {}


async def test_keeping_the_same_hash_again_replaces_the_answer(db: Database) -> None:
    user = await create_user(db)
    await _keep(db, user.id, "a" * 64, "0.01")
    await _keep(db, user.id, "a" * 64, "0.02", reasoning="Again.")

    async with db.read() as session:
        found = await model_cache.find_many(session, ["a" * 64], user_id=user.id)

    assert found["a" * 64].cost == Decimal("0.02")
    assert found["a" * 64].decision["reasoning"] == "Again."
