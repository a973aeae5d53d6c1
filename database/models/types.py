"""Column types that keep money exact and timestamps in UTC on both databases.

SQLAlchemy's Numeric goes through float on SQLite, which would let a float into the
ledger. `Money` stores NUMERIC on PostgreSQL and a canonical fixed-scale string on
SQLite, and always hands back a `Decimal`. Because SQLite would compare that text as
REAL, money is never compared or summed in SQL on SQLite: the services do it in
Python inside a `BEGIN IMMEDIATE` transaction (see database/connection.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_PRECISION = 38
MONEY_SCALE = 18

# JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(38, 18) on PostgreSQL, canonical text on SQLite."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(MONEY_PRECISION + 2))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("a float never enters the ledger: pass a Decimal or a string")
        amount = Decimal(value)
        if dialect.name == "sqlite":
            return format(amount.quantize(Decimal(1).scaleb(-MONEY_SCALE)), "f")
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return strip_zeros(Decimal(value))


def strip_zeros(amount: Decimal) -> Decimal:
    """Drop the storage scale's trailing zeros without turning 100 into 1E+2."""
    normal = amount.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; SQLite drops the zone, so it is put back on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError("expected a datetime")
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp is UTC and timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
