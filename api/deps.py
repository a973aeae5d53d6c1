"""FastAPI dependencies: the services from the app's registry, and the acting user.

All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a thread
hop per request for what is an attribute read.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

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
