"""ORM models, all imported here so Alembic sees every table on `Base.metadata`."""

from database.models.base import Base

__all__ = ["Base"]
