"""Routers, one module per area, gathered here."""

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter

from api import (
    agents,
    backtests,
    health,
    market,
    portfolio,
    risk,
    signals,
    strategies,
    trading,
    websocket,
)

# Probes are never rate limited (a load balancer polls them).
RATE_LIMIT_EXEMPT = (health.health,)


def build_router(api_prefix: str, *, http_dependencies: Sequence[Any] = ()) -> APIRouter:
    """Every route: /health and /ws at the root, the rest under the API prefix.

    `http_dependencies` (the app-wide rate limit) apply to the HTTP routes only: a
    dependency that takes a `Request` cannot be solved for a WebSocket, and applying it
    to /ws refused every connection with a 500.
    """
    deps = list(http_dependencies)
    root = APIRouter()
    root.include_router(health.router, dependencies=deps)
    root.include_router(websocket.router)
    versioned = APIRouter(prefix=api_prefix)
    versioned.include_router(health.services_router)
    versioned.include_router(market.router)
    versioned.include_router(trading.router)
    versioned.include_router(portfolio.router)
    versioned.include_router(agents.router)
    versioned.include_router(risk.router)
    versioned.include_router(strategies.router)
    versioned.include_router(signals.router)
    versioned.include_router(backtests.strategy_router)
    versioned.include_router(backtests.agent_router)
    versioned.include_router(backtests.router)
    root.include_router(versioned, dependencies=deps)
    return root
