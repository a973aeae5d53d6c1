"""The error responses a route documents, each with the one body every error has.

Every 4xx the app sends is an `ErrorResponse` (core/middleware.py renders domain
errors, validation errors and rate limits alike), so a client generated from the
OpenAPI document has one error type. A route lists what it can answer with and why:

    @router.get("/{agent_id}", responses=error_responses(not_found="No such agent."))

Declaring 422 here also replaces FastAPI's default `HTTPValidationError` schema, which
is not the body the app sends (a route with parameters that declares no 422 would get
that default back: tests/api/test_openapi.py refuses it). 429 is on by default:
every route under the API prefix is rate limited (main_consolidated.py).
"""

from __future__ import annotations

from typing import Any

from models.base import ErrorResponse

Responses = dict[int | str, dict[str, Any]]

INVALID_REQUEST = (
    "A path, query or body field is invalid (`validation_failed`, each field in `details.errors`)."
)
RATE_LIMITED = (
    "Too many requests from this client (`rate_limited`): retry after `Retry-After` "
    "seconds (also `details.retry_after_seconds`)."
)

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until the rate limit window lets a request through again.",
        "schema": {"type": "integer"},
    }
}


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


def error_responses(
    *,
    not_found: str | None = None,
    forbidden: str | None = None,
    conflict: str | None = None,
    invalid: str | None = None,
    rate_limited: bool = True,
) -> Responses:
    """403, 404, 409, 422 (each when described) and 429 (unless `rate_limited=False`), all
    with ErrorResponse as their body."""
    responses: Responses = {}
    if forbidden is not None:
        responses[403] = _error(forbidden)
    if not_found is not None:
        responses[404] = _error(not_found)
    if conflict is not None:
        responses[409] = _error(conflict)
    if invalid is not None:
        responses[422] = _error(invalid)
    if rate_limited:
        responses[429] = {**_error(RATE_LIMITED), "headers": _RETRY_AFTER}
    return responses
