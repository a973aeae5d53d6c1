"""Liveness and readiness: the whole service's health and its registry."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RegistryDep
from api.responses import error_responses
from core.service_registry import HealthStatus
from core.version import __version__
from models.system import HealthRead, ServiceHealthRead, ServiceList, ServiceRead

router = APIRouter(tags=["system"])


# Never rate limited (api/__init__.py exempts it: a load balancer polls it).
@router.get(
    "/health",
    operation_id="getHealth",
    response_model=HealthRead,
    responses={503: {"model": HealthRead, "description": "A required service is down."}},
    summary="Overall health and each service's status",
)
async def health(registry: RegistryDep) -> JSONResponse:
    """Overall status, version and each service's status and detail (503 when unhealthy)."""
    report = await registry.health()
    body = HealthRead(
        status=report.status.value,
        timestamp=report.timestamp,
        version=__version__,
        services={
            name: ServiceHealthRead(status=h.status.value, detail=h.detail, data=h.data)
            for name, h in report.services.items()
        },
    )
    status_code = 503 if report.status is HealthStatus.UNHEALTHY else 200
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code)


services_router = APIRouter(prefix="/services", tags=["system"])


@services_router.get(
    "",
    operation_id="listServices",
    response_model=ServiceList,
    responses=error_responses(),
    summary="The service registry",
)
async def list_services(registry: RegistryDep) -> ServiceList:
    """The service registry: each service, its state and what it depends on, in start order."""
    return ServiceList(
        items=[
            ServiceRead(
                name=info.name,
                state=info.state.value,
                optional=info.optional,
                depends_on=list(info.depends_on),
                error=info.error,
                started_at=info.started_at,
            )
            for info in registry.describe()
        ]
    )
