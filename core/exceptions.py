"""Domain errors. Each maps to one JSON body and one 4xx, rendered by core/middleware.py."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


class AppError(Exception):
    """Base of every error a client may see: a code, a message, an HTTP status, details."""

    code = "app_error"
    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details or {}


class NotFoundError(AppError):
    code = "not_found"
    status_code = 404


class ConflictError(AppError):
    code = "conflict"
    status_code = 409


class ValidationFailedError(AppError):
    code = "validation_failed"
    status_code = 422


class PermissionDeniedError(AppError):
    code = "permission_denied"
    status_code = 403


class AuthenticationError(AppError):
    code = "authentication_required"
    status_code = 401


class RateLimitedError(AppError):
    code = "rate_limited"
    status_code = 429


class UpstreamError(AppError):
    """An outside system (exchange, LLM provider) failed; not the client's fault."""

    code = "upstream_error"
    status_code = 502


class ServiceUnavailableError(AppError):
    code = "service_unavailable"
    status_code = 503


class InsufficientFundsError(AppError):
    code = "insufficient_funds"
    status_code = 422


class RiskLimitExceededError(AppError):
    code = "risk_limit_exceeded"
    status_code = 422


class KillSwitchEngagedError(AppError):
    """A kill switch stops the account: no order goes through but its flattening."""

    code = "kill_switch_engaged"
    status_code = 409
