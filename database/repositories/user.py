"""Queries on users. Repositories flush, never commit: the service owns the transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import User


async def find_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def find_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def add(session: AsyncSession, *, email: str, display_name: str, role: str) -> User:
    user = User(email=email, display_name=display_name, role=role, is_active=True)
    session.add(user)
    await session.flush()
    return user
