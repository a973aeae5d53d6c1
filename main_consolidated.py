"""Cival's entry point: `create_app()` builds the app, `python main_consolidated.py` serves it.

Settings are read when the app is built, not when this module is imported, so that
importing it (tests, Alembic, tools) never reads the environment or opens anything.
`uvicorn main_consolidated:app` (the seed's Dockerfile command) works all the same: the
module attribute `app` is built on first access, from the environment at that moment.
`uvicorn main_consolidated:create_app --factory` does the same explicitly.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from slowapi import Limiter
from slowapi.util import get_remote_address

from api import RATE_LIMIT_EXEMPT, build_router
from core.config import Settings, load_settings
from core.exceptions import ConfigError
from core.logging import configure_logging
from core.middleware import RequestContextMiddleware, enforce_rate_limit, install_error_handlers
from core.service_registry import ServiceStartError
from core.version import __version__
from services.container import build_services

log = structlog.get_logger(__name__)

OPENAPI_TAGS = [
    {"name": "system", "description": "Health, version and the service registry."},
    {
        "name": "websocket",
        "description": "Live events over /ws: subscribe to channels and receive each event "
        "in one envelope. The protocol, with every message's schema, is GET /asyncapi.json "
        "(AsyncAPI 3.0).",
    },
    {
        "name": "trading",
        "description": "The paper exchange: orders that walk the book, fills, fees, cancels.",
    },
    {
        "name": "market",
        "description": "Tickers, order books, candles, pairs and the watchlist. A symbol in "
        "a path may be written BTC-USD, btc-usd or BTC%2FUSD: all mean BTC/USD.",
    },
    {
        "name": "portfolio",
        "description": "Equity, positions, performance and rebalancing of an account.",
    },
    {
        "name": "agents",
        "description": "AI agents: each trades its own paper account within risk limits; "
        "every decision is logged with its reasoning, tokens and cost, and streams live "
        "as AG-UI events on the WebSocket channel agent:{id}.",
    },
]


def build_limiter(settings: Settings) -> Limiter:
    """slowapi limiter: Redis storage when configured (shared by every instance), falling
    back to memory if Redis is unreachable; in-process otherwise."""
    storage_uri = settings.redis.url or "memory://"
    options: dict[str, Any] = {}
    if settings.redis.enabled:
        timeout = settings.redis.socket_timeout_seconds
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return Limiter(
        key_func=get_remote_address,
        default_limits=[settings.rate_limit_default],
        storage_uri=storage_uri,
        storage_options=options,
        in_memory_fallback_enabled=settings.redis.enabled,
        key_prefix=f"{settings.redis.namespace}:ratelimit",
        headers_enabled=True,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Services are created here and started by the lifespan."""
    settings = settings or load_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        app.state.services = services
        await services.registry.start()
        log.info(
            "cival_started",
            version=__version__,
            database=services.database.database.dialect,
            redis=settings.redis.enabled,
            environment=settings.environment.value,
        )
        try:
            yield
        finally:
            await services.registry.stop()
            log.info("cival_stopped")

    app = FastAPI(
        title="Cival",
        version=__version__,
        summary="Self-hosted backend for AI-driven autonomous trading.",
        description=(
            "AI agents trade paper accounts within risk limits; every decision is logged "
            "with its reasoning. Decimal amounts travel as strings. Errors share one shape: "
            '`{"error": {"code", "message", "details"}, "request_id"}`.'
        ),
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    limiter = build_limiter(settings)
    for view in RATE_LIMIT_EXEMPT:
        limiter.exempt(view)  # type: ignore[no-untyped-call]
    app.state.limiter = limiter
    install_error_handlers(app)
    app.include_router(
        build_router(settings.api_prefix, http_dependencies=[Depends(enforce_rate_limit)])
    )

    # Outermost last: request id and access log see everything, CORS answers preflights.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "Retry-After"],
    )
    app.add_middleware(RequestContextMiddleware)
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """`main_consolidated.app`: the app built from the environment, once, on first use.

    A bad setting raises ConfigError with the variable named, which uvicorn prints.
    """
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"cival: {e}", file=sys.stderr)  # noqa: T201 - logging is not configured yet
        return 2
    app = create_app(settings)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    except ServiceStartError as e:
        log.error("start_failed", reason=str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
