"""Users, and the `user_id` column every owned row carries."""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from database.orm.base import Base, Timestamps, UUIDPrimaryKey
from database.orm.constraints import one_of
from models.enums import UserRole


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (
        one_of("role", UserRole),
        # Emails are stored lower-cased, so the UNIQUE below is case-insensitive.
        CheckConstraint("email = lower(email)", name="email_lowercase"),
    )

    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=UserRole.USER.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class UserOwned:
    """An owned row: deleting the user deletes it, and queries filter on the index."""

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class UserOwnedComposite:
    """An owned row whose table declares a composite index led by `user_id`: that index
    serves the user's queries and the CASCADE, so the column has none of its own."""

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
