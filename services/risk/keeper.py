"""Stored metrics: each active account's risk metrics (and each user's, all accounts
together) are measured and stored every RISK_METRICS_INTERVAL_SECONDS, and an
account's after its fills (through the monitor's after-fill
hook), and two alerts come from them:

- `var_breach` (high): the one-day 99% historical VaR is more than RISK_VAR_ALERT_PCT
  of equity;
- `position_risk` (medium): a position is worth more than RISK_CONCENTRATION_ALERT_PCT
  of equity (the message names each).

Both are raised once while they stand unacknowledged (services/risk/alerts.py).
"""

from __future__ import annotations

import asyncio
import uuid

import structlog

from core.config import RiskSettings
from core.exceptions import AppError
from database.orm import RiskAlert
from database.repositories import risk as risk_repo
from models.risk import AlertType, Severity
from models.risk_metrics import RiskMetricsRead
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.risk.alerts import publish_alerts, raise_alert
from services.risk.measure import RiskMeasurer

log = structlog.get_logger(__name__)


class MetricsKeeper:
    def __init__(
        self,
        database: DatabaseService,
        measurer: RiskMeasurer,
        event_bus: EventBus,
        settings: RiskSettings,
    ) -> None:
        self._database = database
        self._measurer = measurer
        self._bus = event_bus
        self._settings = settings
        self.stored = 0

    async def store(self, user_id: uuid.UUID, account_id: uuid.UUID) -> RiskMetricsRead:
        """Measure and store the account's metrics, then raise what they call for."""
        read = await self._measurer.store(user_id, account_id=account_id)
        self.stored += 1
        alerts: list[RiskAlert] = []
        async with self._database.database.transaction() as session:
            var = read.tail.historical_99.one_day
            if var.var_fraction is not None and var.var_fraction * 100 > float(
                self._settings.var_alert_pct
            ):
                alert = await raise_alert(
                    session,
                    user_id=user_id,
                    account_id=account_id,
                    alert_type=AlertType.VAR_BREACH,
                    severity=Severity.HIGH,
                    message=(
                        f"one-day 99% VaR {var.var} {read.currency} is "
                        f"{var.var_fraction * 100:.2f}% of equity, above "
                        f"{self._settings.var_alert_pct}%"
                    ),
                    data={
                        "var": str(var.var),
                        "var_fraction": var.var_fraction,
                        "equity": str(read.equity),
                        "threshold_pct": str(self._settings.var_alert_pct),
                    },
                )
                if alert is not None:
                    alerts.append(alert)
            limit = float(self._settings.concentration_alert_pct)
            heavy = [
                p for p in read.position_risks if p.weight is not None and p.weight * 100 > limit
            ]
            if heavy:
                names = ", ".join(f"{p.symbol} {p.weight * 100:.2f}%" for p in heavy if p.weight)
                alert = await raise_alert(
                    session,
                    user_id=user_id,
                    account_id=account_id,
                    alert_type=AlertType.POSITION_RISK,
                    severity=Severity.MEDIUM,
                    message=f"positions above {limit:g}% of equity: {names}",
                    data={
                        "positions": {p.symbol: p.weight for p in heavy},
                        "threshold_pct": str(self._settings.concentration_alert_pct),
                    },
                )
                if alert is not None:
                    alerts.append(alert)
        await publish_alerts(self._bus, alerts)
        return read

    async def round(self) -> int:
        """Every active account's metrics, then each user's accounts together, stored;
        returns how many accounts."""
        async with self._database.database.read() as session:
            accounts = await risk_repo.accounts_in_scope(session, user_id=None, account_id=None)
        for user_id, account_id in accounts:
            try:
                await self.store(user_id, account_id)
            except Exception:
                log.exception("risk_metrics_failed", account_id=str(account_id))
        for user_id in dict.fromkeys(user for user, _ in accounts):
            try:
                await self._measurer.store(user_id, account_id=None, combined=True)
            except AppError as e:  # accounts in several currencies have no sum
                log.info("risk_metrics_not_combined", user_id=str(user_id), reason=e.message)
            except Exception:
                log.exception("risk_metrics_failed", user_id=str(user_id))
        return len(accounts)

    async def run(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self._settings.metrics_interval_seconds)


__all__ = ["MetricsKeeper"]
