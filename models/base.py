"""The one base for API schemas: Decimals travel as strings, inputs refuse unknown fields,
and every error has one body (`ErrorResponse`)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)


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


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _iso_only(value: Any) -> Any:
    # Pydantic's lax mode reads a number (or a numeric string) as Unix seconds: `0.5`
    # would mean 1970. The API documents ISO 8601 (`format: date-time`) and takes only it.
    if isinstance(value, int | float | Decimal) or (
        isinstance(value, str) and _NUMBER.fullmatch(value.strip())
    ):
        raise ValueError(
            "expected a date-time in ISO 8601 (e.g. 2026-01-31T12:00:00Z), not a number"
        )
    return value


# A moment as the API takes it: an ISO 8601 string (a date alone is its midnight).
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]
# The same, with its UTC offset required.
IsoAwareDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


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


class ErrorDetail(BaseModel):
    """What went wrong: a stable code to branch on, a message to show, the details."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="Stable and machine-readable: not_found, conflict, validation_failed, "
        "rate_limited, insufficient_funds, or a more precise one (a pair rule, "
        "agent_budget_spent, name_taken, ...).",
        examples=["not_found"],
    )
    message: str = Field(
        description="One line for a person; its wording may change.",
        examples=["order 5f0c7a9e-2d31-4a0b-9a67-0f5a0b0c1d2e not found"],
    )
    details: dict[str, Any] = Field(
        description="What the code is about, {} when nothing: for validation_failed "
        "`errors`, a list of {field, message, type}; for rate_limited `limit` and "
        "`retry_after_seconds`; otherwise the ids or values involved.",
        examples=[{"order_id": "5f0c7a9e-2d31-4a0b-9a67-0f5a0b0c1d2e"}],
    )


class ErrorResponse(BaseModel):
    """The body of every error response, whatever its status (4xx and 500 alike)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail
    request_id: str = Field(
        description="This request's id, also in the X-Request-ID header: quote it when "
        "reporting a problem."
    )
