"""The one base for API schemas: Decimals travel as strings, inputs refuse unknown fields."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema


def _decimal_in(value: Any) -> Any:
    # A JSON number arrives as int or float; go through its repr so 0.1 means exactly 0.1.
    if isinstance(value, bool):
        raise ValueError("expected a decimal string or number")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def decimal_to_str(value: Decimal) -> str:
    """Plain notation, never an exponent: 1E+2 -> '100', 1E-7 -> '0.0000001'."""
    return format(value, "f")


DecimalStr = Annotated[
    Decimal,
    BeforeValidator(_decimal_in),
    PlainSerializer(decimal_to_str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "decimal", "examples": ["0.1"]}),
]


class AppModel(BaseModel):
    """Read models: built from ORM objects or dataclasses."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class InputModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


T = TypeVar("T")


class Page(AppModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
