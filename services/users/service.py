"""Users. In solo mode (AUTH_ENABLED=false, the default) one local user is created at
start and every request acts as that user, so the same user-scoped code paths run
with and without login."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.exceptions import NotFoundError
from core.service_registry import ServiceHealth
from database.repositories import accounts as account_repo
from database.repositories import user as user_repo
from database.seeds.catalog import SIMULATED_EXCHANGE
from models.user import UserRead
from services.infra.database import DatabaseService

log = structlog.get_logger(__name__)


class UserService:
    def __init__(self, database: DatabaseService, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._solo_user_id: uuid.UUID | None = None

    @property
    def solo_user_id(self) -> uuid.UUID:
        if self._solo_user_id is None:
            raise RuntimeError("the user service has not started")
        return self._solo_user_id

    async def start(self) -> None:
        self._solo_user_id = (await self.ensure_solo_user()).id

    async def stop(self) -> None:
        self._solo_user_id = None

    async def health(self) -> ServiceHealth:
        mode = "auth" if self._settings.auth_enabled else "solo"
        return ServiceHealth.healthy(f"{mode} mode", solo_user_id=str(self.solo_user_id))

    async def ensure_solo_user(self) -> UserRead:
        """Finds or creates the local user; safe when several instances start at once."""
        email = self._settings.solo_user_email
        db = self._database.database
        try:
            async with db.transaction() as session:
                user = await user_repo.find_by_email(session, email)
                if user is None:
                    user = await user_repo.add(
                        session, email=email, display_name="Local trader", role="admin"
                    )
                    log.info("solo_user_created", user_id=str(user.id))
                await self._ensure_default_account(session, user.id)
                return UserRead.model_validate(user)
        except IntegrityError:
            # Another instance inserted it between our read and our insert (PostgreSQL).
            async with db.read() as session:
                existing = await user_repo.find_by_email(session, email)
                if existing is None:
                    raise
                return UserRead.model_validate(existing)

    async def _ensure_default_account(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        """Every user trades a default paper account, funded per PAPER_* settings."""
        paper = self._settings.paper
        account, created = await account_repo.ensure_default_account(
            session,
            user_id,
            exchange=SIMULATED_EXCHANGE,
            base_currency=paper.base_currency,
            initial_balance=paper.initial_balance,
        )
        if created:
            log.info("default_account_created", user_id=str(user_id), account_id=str(account.id))

    async def get_user(self, user_id: uuid.UUID) -> UserRead:
        """Raises NotFoundError for an unknown id."""
        async with self._database.database.read() as session:
            user = await user_repo.find_by_id(session, user_id)
            if user is None:
                raise NotFoundError(f"user {user_id} not found", details={"user_id": str(user_id)})
            return UserRead.model_validate(user)
