"""Request ids, the access log, and the one JSON shape every error takes.

`{"error": {"code", "message", "details"}, "request_id"}` for domain errors,
validation errors (422), unknown routes (404), rate limits (429), a database
connection lost mid-request (503, retry) and bugs (a bare 500 whose traceback goes to
the log, never to the client).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, cast

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.exceptions import AppError

log = structlog.get_logger("cival.access")
error_log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_HTTP_CODES = {
    400: "bad_request",
    401: "authentication_required",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else ""


class RequestContextMiddleware:
    """Gives every request an id (the client's X-Request-ID when it is sane), echoes it on
    the response, binds it to the log context, and writes one access-log line.

    Pure ASGI rather than BaseHTTPMiddleware: no extra task per request, and streaming
    and WebSocket traffic pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                log.info(
                    "http_request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    client=(scope.get("client") or ("-",))[0],
                )
            structlog.contextvars.unbind_contextvars("request_id")


def error_response(
    request: Request,
    *,
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {"code": code, "message": message, "details": details or {}},
        "request_id": request_id_of(request),
    }
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


async def _app_error(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(AppError, raised)
    return error_response(
        request,
        status_code=exc.status_code,
        code=exc.code,
        message=exc.message,
        details=exc.details,
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _error_message(err: dict[str, Any]) -> str:
    message = str(err.get("msg", "invalid"))
    if err.get("type") == "json_invalid":
        reason = (err.get("ctx") or {}).get("error")
        return f"invalid JSON: {reason}" if reason else "invalid JSON"
    return message


async def _validation_error(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(RequestValidationError, raised)
    errors = [
        {
            "field": _field_path(tuple(err.get("loc", ()))),
            "message": _error_message(err),
            "type": err.get("type", "value_error"),
        }
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return error_response(
        request,
        status_code=422,
        code="validation_failed",
        message=message,
        details={"errors": errors},
    )


async def _http_error(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, raised)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    return error_response(
        request,
        status_code=exc.status_code,
        code=code,
        message=message,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _rate_limited(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(RateLimitExceeded, raised)
    limit = exc.limit.limit if exc.limit is not None else None
    retry_after = max(1, int(limit.get_expiry())) if limit is not None else 60
    limiter = getattr(request.app.state, "limiter", None)
    window = getattr(request.state, "view_rate_limit", None)
    if limiter is not None and window is not None:
        reset_at, _ = limiter.limiter.get_window_stats(window[0], *window[1])
        retry_after = max(1, int(reset_at - time.time()) + 1)
    return error_response(
        request,
        status_code=429,
        code="rate_limited",
        message=f"rate limit exceeded: {limit}",
        details={"limit": str(limit), "retry_after_seconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


async def _database_error(request: Request, raised: Exception) -> JSONResponse:
    """A connection the database dropped (a server restart; the pool does not test
    connections before use unless DATABASE_POOL_PRE_PING) is a 503 the client may
    retry: the pool has discarded it and the transaction rolled back. Any other
    database error is a bug (500)."""
    exc = cast(DBAPIError, raised)
    if not exc.connection_invalidated:
        # Inside RequestContextMiddleware, which adds the request id header.
        return _bug(request, exc, headers=None)
    error_log.warning("database_connection_lost", method=request.method, path=request.url.path)
    return error_response(
        request,
        status_code=503,
        code="database_unavailable",
        message="the database connection was lost; retry",
        headers={"Retry-After": "1"},
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Rendered by Starlette's outermost error middleware, outside RequestContextMiddleware,
    # so the request id header is set here.
    return _bug(request, exc, headers={REQUEST_ID_HEADER: request_id_of(request)})


def _bug(request: Request, exc: Exception, *, headers: dict[str, str] | None) -> JSONResponse:
    error_log.exception(
        "unhandled_error", method=request.method, path=request.url.path, exc_info=exc
    )
    return error_response(
        request,
        status_code=500,
        code="internal_error",
        message="internal server error",
        headers=headers,
    )


async def enforce_rate_limit(request: Request, response: Response) -> None:
    """App-wide dependency: the default limit for every routed HTTP request.

    A dependency rather than slowapi's middleware: FastAPI resolves included routers
    lazily, so the middleware cannot find the endpoint and would let everything through;
    here routing is done and `scope["endpoint"]` names the view (and its exemption).
    """
    limiter = cast(Limiter | None, getattr(request.app.state, "limiter", None))
    endpoint = request.scope.get("endpoint")
    if limiter is None or endpoint is None:
        return
    limiter._check_request_limit(request, endpoint, in_middleware=True)
    window = getattr(request.state, "view_rate_limit", None)
    if limiter._headers_enabled and window is not None:
        limiter._inject_headers(response, window)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RateLimitExceeded, _rate_limited)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unhandled)
