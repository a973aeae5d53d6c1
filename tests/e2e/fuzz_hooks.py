"""Schemathesis hooks for the API fuzz run (loaded by SCHEMATHESIS_HOOKS): a check that
every error response carries the one error shape."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
    """Every 4xx and 5xx is `{"error": {"code", "message", "details"}, "request_id"}`."""
    if response.status_code < 400:
        return
    body = response.json()
    if not isinstance(body, dict) or set(body) != {"error", "request_id"}:
        raise AssertionError(f"not the error shape: {body!r}"[:500])
    error = body["error"]
    if not isinstance(error, dict) or set(error) != {"code", "message", "details"}:
        raise AssertionError(f"not the error shape: {body!r}"[:500])
    if not (isinstance(error["code"], str) and error["code"]):
        raise AssertionError(f"error.code must be a non-empty string: {body!r}"[:500])
    if not (isinstance(error["message"], str) and error["message"]):
        raise AssertionError(f"error.message must be a non-empty string: {body!r}"[:500])
    if not isinstance(error["details"], dict):
        raise AssertionError(f"error.details must be an object: {body!r}"[:500])
    if body["request_id"] != response.headers.get("x-request-id", [""])[0]:
        raise AssertionError("request_id differs from the X-Request-ID header")
