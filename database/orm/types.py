"""Column types that keep money exact and timestamps in UTC on both databases.

SQLAlchemy's Numeric goes through float on SQLite, which would let a float into the
ledger. `Money` stores NUMERIC on PostgreSQL and a canonical fixed-scale string on
SQLite, and always hands back a `Decimal`. Because SQLite would compare that text as
REAL, money is never compared or summed in SQL on SQLite: the services do it in
Python inside a `BEGIN IMMEDIATE` transaction (see database/connection.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine
from typing_extensions import override

MONEY_PRECISION = 38
MONEY_SCALE = 18
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_LIMIT = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)
# Wide enough for every storable amount plus a carry, so nothing is rounded to 28 digits
# (the default context) on the way in or out.
_CONTEXT = Context(prec=MONEY_PRECISION + 1, rounding=ROUND_HALF_UP)

# JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(38, 18) on PostgreSQL, canonical text on SQLite."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    @override
    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(MONEY_PRECISION + 2))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    @override
    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = to_storage_scale(value)
        if dialect.name == "sqlite":
            return format(amount, "f")
        return amount

    @override
    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return strip_zeros(Decimal(value))


def to_storage_scale(value: Any) -> Decimal:
    """The amount as stored: 18 decimals, rounded half away from zero as PostgreSQL's
    NUMERIC does, so both databases keep the same value. Refuses floats, booleans,
    NaN, infinities and amounts of 10^20 or more (PostgreSQL's overflow)."""
    if isinstance(value, float | bool):
        raise TypeError("a float never enters the ledger: pass a Decimal or a string")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {amount}")
    if amount.copy_abs() < _LIMIT:
        amount = amount.quantize(_QUANTUM, context=_CONTEXT)
    if amount.copy_abs() >= _LIMIT:
        raise ValueError(f"amount out of range: {value} (limit is 10^20)")
    return amount


def strip_zeros(amount: Decimal) -> Decimal:
    """Drop the storage scale's trailing zeros without turning 100 into 1E+2."""
    normal = amount.normalize(_CONTEXT)
    if normal == normal.to_integral_value():
        return normal.quantize(Decimal(1), context=_CONTEXT)
    return normal


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; SQLite drops the zone, so it is put back on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @override
    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError("expected a datetime")
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp is UTC and timezone-aware")
        return value.astimezone(UTC)

    @override
    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
