"""FastAPI dependencies: the services from the app's registry, and the acting user.

All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a thread
hop per request for what is an attribute read.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request, WebSocket

from core.service_registry import ServiceRegistry
from services.container import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_registry(services: ServicesDep) -> ServiceRegistry:
    return services.registry


RegistryDep = Annotated[ServiceRegistry, Depends(get_registry)]


async def get_current_user_id(services: ServicesDep) -> uuid.UUID:
    """Solo mode: every request acts as the local user. Login plugs in here later."""
    return services.users.solo_user_id


CurrentUserId = Annotated[uuid.UUID, Depends(get_current_user_id)]


async def get_websocket_user_id(websocket: WebSocket) -> uuid.UUID | None:
    """The user a /ws connection acts for, resolved as for HTTP: solo mode, the local user.

    Events published for a user reach only that user's connections, so a connection
    without a user would receive no fill, order or portfolio event at all. A resolver
    that refuses a client raises `WebSocketException(1008, reason)`.
    """
    services: Services = websocket.app.state.services
    return services.users.solo_user_id


WebSocketUserId = Annotated[uuid.UUID | None, Depends(get_websocket_user_id)]
