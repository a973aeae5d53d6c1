"""Routers, one module per area, gathered here."""

from fastapi import APIRouter

from api import agents, health, market, portfolio, trading, websocket

# Probes are never rate limited (a load balancer polls them).
RATE_LIMIT_EXEMPT = (health.health,)


def build_router(api_prefix: str) -> APIRouter:
    """Every route: /health and /ws at the root, the rest under the API prefix."""
    root = APIRouter()
    root.include_router(health.router)
    root.include_router(websocket.router)
    versioned = APIRouter(prefix=api_prefix)
    versioned.include_router(health.services_router)
    versioned.include_router(market.router)
    versioned.include_router(trading.router)
    versioned.include_router(portfolio.router)
    versioned.include_router(agents.router)
    root.include_router(versioned)
    return root
