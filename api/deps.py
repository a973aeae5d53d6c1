"""FastAPI dependencies: the services from the app's registry, and the acting user."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from core.service_registry import ServiceRegistry
from services.container import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_registry(services: ServicesDep) -> ServiceRegistry:
    return services.registry


RegistryDep = Annotated[ServiceRegistry, Depends(get_registry)]


def get_current_user_id(services: ServicesDep) -> uuid.UUID:
    """Solo mode: every request acts as the local user. Login plugs in here later."""
    return services.users.solo_user_id


CurrentUserId = Annotated[uuid.UUID, Depends(get_current_user_id)]
