"""Schemas of the health report and the service registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from models.base import AppModel

HealthStatusLiteral = Literal["healthy", "degraded", "unhealthy"]


class ServiceHealthRead(AppModel):
    status: HealthStatusLiteral
    detail: str
    data: dict[str, Any] = Field(default_factory=dict)


class HealthRead(AppModel):
    status: HealthStatusLiteral = Field(
        description="unhealthy if a required service is down (HTTP 503); degraded if an "
        "optional one is (Redis), or a service reports trouble; otherwise healthy."
    )
    timestamp: datetime
    version: str
    services: dict[str, ServiceHealthRead]


class ServiceRead(AppModel):
    name: str
    state: Literal["registered", "starting", "running", "failed", "stopping", "stopped"]
    optional: bool = Field(description="An optional service may fail without failing the start.")
    depends_on: list[str]
    error: str | None
    started_at: datetime | None


class ServiceList(AppModel):
    items: list[ServiceRead]
