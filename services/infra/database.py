"""The database as a registry service: engine up, migrations applied, health by ping."""

from __future__ import annotations

import structlog

from core.config import Settings
from core.service_registry import ServiceHealth
from database.connection import Database
from database.migrate import upgrade

log = structlog.get_logger(__name__)


class DatabaseService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("the database service has not started")
        return self._database

    async def start(self) -> None:
        """Open the engine, check the server answers, and migrate to head when asked."""
        db_settings = self._settings.database
        self._database = Database(
            self._settings.database_url,
            echo=db_settings.echo,
            pool_size=db_settings.pool_size,
            max_overflow=db_settings.max_overflow,
            pool_pre_ping=db_settings.pool_pre_ping,
            pool_recycle=db_settings.pool_recycle,
        )
        await self._database.ping()
        if self._settings.run_migrations:
            await upgrade(self._database.engine)
            log.info("migrations_applied", dialect=self._database.dialect)

    async def stop(self) -> None:
        if self._database is not None:
            await self._database.dispose()
            self._database = None

    async def health(self) -> ServiceHealth:
        latency_ms = await self.database.ping()
        return ServiceHealth.healthy(
            f"{self.database.dialect} answers", latency_ms=round(latency_ms, 2)
        )
