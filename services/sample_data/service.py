"""Loads the sample agents, strategies and trading pairs when the database is empty."""

from __future__ import annotations

import structlog

from core.config import Settings
from core.service_registry import ServiceHealth
from database.seeds import load_seed_data, seed_is_loaded
from services.infra.database import DatabaseService
from services.users.service import UserService

log = structlog.get_logger(__name__)


class SampleDataService:
    def __init__(self, database: DatabaseService, users: UserService, settings: Settings) -> None:
        self._database = database
        self._users = users
        self._settings = settings
        self._detail = "not loaded"

    async def start(self) -> None:
        """Idempotent: a database that has the sample data is left as it is."""
        if not self._settings.load_seed_data:
            self._detail = "disabled (LOAD_SEED_DATA=false)"
            return
        user_id = self._users.solo_user_id
        async with self._database.database.transaction() as session:
            if await seed_is_loaded(session, user_id=user_id):
                self._detail = "already present"
                return
            report = await load_seed_data(session, user_id=user_id)
        self._detail = f"loaded {report}"
        log.info("sample_data_loaded", report=str(report))

    async def stop(self) -> None:
        return None

    async def health(self) -> ServiceHealth:
        return ServiceHealth.healthy(self._detail)
