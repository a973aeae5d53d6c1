"""The risk monitor: re-evaluates accounts' limits on a schedule and shortly after their
fills, keeps `trading_limits.current_value` up to date, raises alerts and engages the
kill switch of a limit marked `kill_on_breach`.

Per account with active limits, each round (one transaction, the account held):

- every limit is measured with no order (services/risk/limits.py) and its
  `current_value` written;
- a limit used RISK_APPROACH_PCT or more raises `limit_approached` (medium);
- a limit the account is over raises `limit_breached` (`drawdown_limit` for
  max_drawdown), high, or critical when it is `kill_on_breach`;
- after the commit, a critical breach engages the account's kill switch (flattening
  with RISK_KILL_SWITCH_FLATTEN), unless a switch already stops the account.

Alerts are raised once while they stand unacknowledged (services/risk/alerts.py).
Fills are seen as `trade_execution` events on the bus, so with Redis a fill on any
instance is seen by every monitor; duplicates collapse into the standing alert, and a
second kill switch is not engaged over a first.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import RiskSettings
from database.orm import RiskAlert
from database.repositories import risk as risk_repo
from models.events import Channel, Event, EventType
from models.risk import AlertType, KillScope, KillSwitchEngage, LimitType, Severity
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.paper_trading import ledger
from services.risk.alerts import publish_alerts, raise_alert
from services.risk.gate import RiskGate, reading_details, rule_of
from services.risk.kill_switch import KillSwitches
from services.risk.limits import evaluate
from services.risk.state import LimitReading

log = structlog.get_logger(__name__)

_HUNDRED = Decimal(100)


@dataclass(slots=True)
class Evaluation:
    """What one account's round found and did."""

    account_id: uuid.UUID
    readings: list[LimitReading] = field(default_factory=list)
    alerts: list[RiskAlert] = field(default_factory=list)
    killed: bool = False


def _alert_of(reading: LimitReading, approach: Decimal) -> tuple[AlertType, Severity] | None:
    if reading.breached:
        kind = (
            AlertType.DRAWDOWN_LIMIT
            if reading.rule.limit_type is LimitType.MAX_DRAWDOWN
            else AlertType.LIMIT_BREACHED
        )
        return kind, Severity.CRITICAL if reading.rule.kill_on_breach else Severity.HIGH
    if reading.utilisation is not None and reading.utilisation * _HUNDRED >= approach:
        return AlertType.LIMIT_APPROACHED, Severity.MEDIUM
    return None


class RiskMonitor:
    def __init__(
        self,
        database: DatabaseService,
        gate: RiskGate,
        switches: KillSwitches,
        event_bus: EventBus,
        settings: RiskSettings,
    ) -> None:
        self._database = database
        self._gate = gate
        self._switches = switches
        self._bus = event_bus
        self._settings = settings
        # Users with a fill not yet evaluated: user -> (when it is due, the accounts).
        self._due: dict[uuid.UUID, tuple[float, set[uuid.UUID]]] = {}
        self._wake = asyncio.Event()
        self._clock: Callable[[], float] = time.monotonic
        # Called with (user, account) after a fill's round (the metrics are stored).
        self.after_fill: list[Callable[[uuid.UUID, uuid.UUID], Awaitable[object]]] = []
        self.rounds = 0
        self.evaluations = 0

    def on_event(self, event: Event) -> None:
        """A bus handler: a fill makes its account due after RISK_AFTER_FILL_DELAY_SECONDS."""
        if event.channel != Channel.TRADES or event.type != EventType.TRADE_EXECUTION:
            return
        data = orjson.loads(event.payload).get("data", {})
        if not data.get("fills") or event.user_id is None:
            return
        account_id = uuid.UUID(data["account_id"])
        due = self._due.get(event.user_id)
        if due is None:
            when = self._clock() + self._settings.after_fill_delay_seconds
            self._due[event.user_id] = (when, {account_id})
            self._wake.set()
        else:
            due[1].add(account_id)

    async def evaluate_user(self, user_id: uuid.UUID) -> list[Evaluation]:
        """Each of the user's active accounts, then the limits held on all of them: their
        current value is the largest of the accounts' measures (the one nearest its
        limit)."""
        async with self._database.database.read() as session:
            accounts = await risk_repo.accounts_in_scope(session, user_id=user_id, account_id=None)
        found: list[Evaluation] = []
        for _, account_id in accounts:
            try:
                found.append(await self.evaluate_account(user_id, account_id))
            except Exception:
                # One account's failure must not stop the others'.
                log.exception("risk_evaluation_failed", account_id=str(account_id))
        widest: dict[uuid.UUID, Decimal] = {}
        for evaluation in found:
            for reading in evaluation.readings:
                if reading.rule.account_id is None and reading.current is not None:
                    seen = widest.get(reading.rule.id)
                    widest[reading.rule.id] = (
                        reading.current if seen is None else max(seen, reading.current)
                    )
        if widest:
            async with self._database.database.transaction() as session:
                await risk_repo.set_current_values(session, widest.items())
        return found

    async def evaluate_account(self, user_id: uuid.UUID, account_id: uuid.UUID) -> Evaluation:
        """One account's round (see the module doc); the current values it writes are
        those of the limits of this account alone (evaluate_user writes the others)."""
        found = Evaluation(account_id)
        kill: list[LimitReading] = []
        async with self._database.database.transaction() as session:
            limits = await risk_repo.limits_of(
                session, user_id=user_id, account_id=account_id, active=True
            )
            if not limits:
                return found
            book = await ledger.lock_account(session, user_id, account_id)
            rules = [rule_of(limit) for limit in limits]
            state = await self._gate.account_state(session, book, rules)
            found.readings = evaluate(state, rules)
            await risk_repo.set_current_values(
                session,
                [
                    (r.rule.id, r.current)
                    for r in found.readings
                    if r.current is not None and r.rule.account_id is not None
                ],
            )
            for reading in found.readings:
                alert = await self._raise(session, user_id, account_id, reading)
                if alert is not None:
                    found.alerts.append(alert)
                if reading.breached and reading.rule.kill_on_breach:
                    kill.append(reading)
            engaged = bool(kill) and bool(
                await risk_repo.engaged_over(session, user_id=user_id, account_id=account_id)
            )
        self.evaluations += 1
        await publish_alerts(self._bus, found.alerts)
        if kill and not engaged:
            reasons = "; ".join(f"{r.rule.limit_type.value}: {r.reason}" for r in kill)
            await self._switches.engage(
                user_id,
                KillSwitchEngage(
                    scope=KillScope.ACCOUNT,
                    account_id=account_id,
                    reason=f"limit breached: {reasons}",
                    flatten=self._settings.kill_switch_flatten,
                ),
                by_monitor=True,
            )
            found.killed = True
        return found

    async def _raise(
        self,
        session: AsyncSession,
        user_id: uuid.UUID,
        account_id: uuid.UUID,
        reading: LimitReading,
    ) -> RiskAlert | None:
        kind = _alert_of(reading, self._settings.approach_pct)
        if kind is None:
            return None
        alert_type, severity = kind
        rule = reading.rule
        scope = f" on {rule.symbol}" if rule.symbol else ""
        return await raise_alert(
            session,
            user_id=user_id,
            account_id=account_id,
            limit_id=rule.id,
            alert_type=alert_type,
            severity=severity,
            message=f"{rule.limit_type.value} limit{scope}: {reading.reason}",
            data=reading_details(reading),
        )

    async def round(self) -> int:
        """Every user with active limits; returns how many accounts were evaluated."""
        async with self._database.database.read() as session:
            users = await risk_repo.users_with_limits(session)
        evaluated = 0
        for user_id in users:
            evaluated += len(await self.evaluate_user(user_id))
        self.rounds += 1
        return evaluated

    async def run(self) -> None:
        """The loop: a full round every RISK_MONITOR_INTERVAL_SECONDS, and each user
        with a fill once its delay has passed (then the after-fill hooks, per account)."""
        next_round = self._clock()
        while True:
            now = self._clock()
            if now >= next_round:
                await self.round()
                next_round = self._clock() + self._settings.monitor_interval_seconds
            ready = [(user, accounts) for user, (due, accounts) in self._due.items() if due <= now]
            for user_id, _ in ready:
                self._due.pop(user_id, None)
            for user_id, accounts in ready:
                await self.evaluate_user(user_id)
                for account_id in sorted(accounts):
                    for hook in self.after_fill:
                        try:
                            await hook(user_id, account_id)
                        except Exception:
                            log.exception("risk_after_fill_failed", account_id=str(account_id))
            wake_at = min([next_round, *(due for due, _ in self._due.values())])
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, wake_at - self._clock()))
            except TimeoutError:
                pass
