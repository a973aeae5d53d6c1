"""Risk alerts: stored in `risk_alerts`, pushed as `risk_alert` events on the durable
`risk` channel (a reconnecting client replays them with `since`), listed and
acknowledged by their user.

An alert the monitor raises is raised once: while an unacknowledged alert of the same
type, account and limit stands, the condition is not announced again (its `data` is
refreshed instead, so the alert shows the latest figures). Acknowledging it re-arms it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import NotFoundError
from database.orm import RiskAlert
from database.orm.types import utcnow
from database.repositories import risk as risk_repo
from models.base import Page
from models.events import Channel, EventType
from models.risk import AlertAcknowledged, AlertRead, AlertType, Severity
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus

log = structlog.get_logger(__name__)


def alert_read(alert: RiskAlert) -> AlertRead:
    return AlertRead.model_validate(alert)


async def raise_alert(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    alert_type: AlertType,
    severity: Severity,
    message: str,
    data: dict[str, Any],
    account_id: uuid.UUID | None = None,
    limit_id: uuid.UUID | None = None,
    once: bool = True,
) -> RiskAlert | None:
    """Adds the alert (in the caller's transaction) and returns it to be published
    after the commit; None when `once` and the same alert stands unacknowledged."""
    if once:
        standing = await risk_repo.open_alert(
            session,
            user_id=user_id,
            account_id=account_id,
            alert_type=alert_type.value,
            limit_id=limit_id,
        )
        if standing is not None:
            standing.data = data
            return None
    return await risk_repo.add_alert(
        session,
        RiskAlert(
            user_id=user_id,
            account_id=account_id,
            limit_id=limit_id,
            alert_type=alert_type.value,
            severity=severity.value,
            message=message,
            data=data,
            acknowledged=False,
            created_at=utcnow(),
        ),
    )


async def publish_alerts(bus: EventBus, alerts: Sequence[RiskAlert]) -> None:
    """After the commit: one `risk_alert` event each, to its user only."""
    for alert in alerts:
        data = alert_read(alert).model_dump(mode="json")
        try:
            await bus.publish(Channel.RISK, EventType.RISK_ALERT, data, user_id=alert.user_id)
        except Exception:  # stored already; a lost push is logged, never raised
            log.exception("risk_alert_publish_failed", alert_id=str(alert.id))
        log.warning(
            "risk_alert",
            alert_id=str(alert.id),
            alert_type=alert.alert_type,
            severity=alert.severity,
            account_id=str(alert.account_id) if alert.account_id else None,
        )


class RiskAlerts:
    """The user's side of the alerts: list with filters, acknowledge."""

    def __init__(self, database: DatabaseService) -> None:
        self._database = database

    async def list_alerts(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        acknowledged: bool | None = None,
        severities: Sequence[Severity] = (),
        alert_types: Sequence[AlertType] = (),
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[AlertRead]:
        """The user's alerts, newest first, filtered."""
        async with self._database.database.read() as session:
            rows, total = await risk_repo.alerts_page(
                session,
                user_id=user_id,
                account_id=account_id,
                acknowledged=acknowledged,
                severities=[s.value for s in severities],
                alert_types=[t.value for t in alert_types],
                since=since,
                limit=limit,
                offset=offset,
            )
            return Page[AlertRead](
                items=[alert_read(r) for r in rows], total=total, limit=limit, offset=offset
            )

    async def acknowledge(
        self, user_id: uuid.UUID, alert_ids: Sequence[uuid.UUID]
    ) -> AlertAcknowledged:
        """Marks the user's alerts acknowledged (again is a no-op); an id that is not one
        of the user's alerts is a 404 and nothing is acknowledged."""
        wanted = list(dict.fromkeys(alert_ids))
        async with self._database.database.transaction() as session:
            rows = await risk_repo.alerts_by_id(session, wanted, user_id=user_id)
            missing = sorted(str(i) for i in set(wanted) - {row.id for row in rows})
            if missing:
                raise NotFoundError(
                    f"alert{'s' if len(missing) > 1 else ''} not found: {', '.join(missing)}",
                    details={"alert_ids": missing},
                )
            now = utcnow()
            for row in rows:
                if not row.acknowledged:
                    row.acknowledged, row.acknowledged_at = True, now
            await session.flush()
            items = [alert_read(row) for row in sorted(rows, key=lambda r: wanted.index(r.id))]
        return AlertAcknowledged(items=items, count=len(items))
