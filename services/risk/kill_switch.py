"""The kill switch: per account, per user or global, engaged by hand or by a limit
marked `kill_on_breach`, and held until released.

Engaging it, in this order:

1. The switch is stored (committed): from then on the pre-trade check refuses every
   order of its scope with a 409, and the paper exchange fills none of their resting
   orders (services/risk/gate.py is asked under each account's lock).
2. Every open order of the accounts is cancelled ("cancelled by the kill switch (its
   reason)").
3. Every active agent trading them is paused with the switch's reason.
4. With `flatten`, every position is sold at market: these sells are the only orders
   the switch lets through. A position that cannot be sold (below the pair's minimum)
   is reported, not retried.
5. What it did is stored on the switch (`effects`) and a critical `kill_switch` alert
   is raised for each user it stops.

Releasing it lets orders through again; paused agents stay paused until their user
starts them. A global switch is engaged and released by admins only.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import AppError, ConflictError, NotFoundError, PermissionDeniedError
from database.orm import KillSwitch
from database.orm.types import utcnow
from database.repositories import accounts as account_repo
from database.repositories import agents as agent_repo
from database.repositories import risk as risk_repo
from database.repositories import user as user_repo
from models.enums import UserRole
from models.risk import (
    AlertType,
    KillScope,
    KillSwitchEngage,
    KillSwitchList,
    KillSwitchRead,
    Severity,
)
from models.trading import OrderList, PositionCloseList
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.risk.alerts import publish_alerts, raise_alert

log = structlog.get_logger(__name__)


class Lifecycle(Protocol):
    async def cancel_all(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        symbol: str | None = None,
        reason: str = ...,
    ) -> OrderList: ...

    async def close_all(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None = None, flatten: bool = False
    ) -> PositionCloseList: ...


class AgentPauser(Protocol):
    async def pause_agent(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, *, reason: str
    ) -> None: ...


def switch_read(switch: KillSwitch) -> KillSwitchRead:
    return KillSwitchRead.model_validate(switch)


class KillSwitches:
    def __init__(
        self,
        database: DatabaseService,
        lifecycle: Lifecycle,
        agents: AgentPauser,
        event_bus: EventBus,
    ) -> None:
        self._database = database
        self._lifecycle = lifecycle
        self._agents = agents
        self._bus = event_bus

    async def engage(
        self, user_id: uuid.UUID, request: KillSwitchEngage, *, by_monitor: bool = False
    ) -> KillSwitchRead:
        """Engage a switch (see the module doc), by the user or (`by_monitor`) by the
        risk monitor on the user's behalf."""
        now = utcnow()
        async with self._database.database.transaction() as session:
            owner, account_id = await self._scope_ids(session, user_id, request)
            switch = await risk_repo.add_switch(
                session,
                KillSwitch(
                    scope=request.scope.value,
                    user_id=owner,
                    account_id=account_id,
                    reason=request.reason,
                    engaged_by=None if by_monitor else user_id,
                    flatten=request.flatten,
                    effects={},
                    engaged_at=now,
                    created_at=now,
                ),
            )
            # Under the accounts' row locks: an order in flight finishes first, and every
            # order after the commit sees the switch (services/risk/gate.py).
            await risk_repo.bump_risk_version(session, user_id=owner, account_id=account_id)
            accounts = await risk_repo.accounts_in_scope(
                session, user_id=owner, account_id=account_id
            )
        log.warning(
            "kill_switch_engaged",
            switch_id=str(switch.id),
            scope=request.scope.value,
            accounts=len(accounts),
            flatten=request.flatten,
        )
        effects = await self._stop(switch, accounts)
        alerts = []
        async with self._database.database.transaction() as session:
            stored = await risk_repo.switch_by_id(session, switch.id)
            if stored is not None:
                stored.effects = effects
                switch = stored
            for affected in sorted({user for user, _ in accounts} | ({owner} if owner else set())):
                alert = await raise_alert(
                    session,
                    user_id=affected,
                    account_id=account_id,
                    alert_type=AlertType.KILL_SWITCH,
                    severity=Severity.CRITICAL,
                    message=f"kill switch engaged ({request.scope.value}): {request.reason}",
                    data={"kill_switch_id": str(switch.id), **effects},
                    once=False,
                )
                if alert is not None:
                    alerts.append(alert)
            read = switch_read(switch)
        await publish_alerts(self._bus, alerts)
        return read

    async def _scope_ids(
        self, session: AsyncSession, user_id: uuid.UUID, request: KillSwitchEngage
    ) -> tuple[uuid.UUID | None, uuid.UUID | None]:
        if request.scope is KillScope.GLOBAL:
            await self._require_admin(session, user_id, "engage")
            return None, None
        if request.scope is KillScope.USER:
            return user_id, None
        account = await account_repo.find_account(session, user_id, request.account_id)
        return user_id, account.id

    async def _require_admin(
        self, session: AsyncSession, user_id: uuid.UUID | None, what: str
    ) -> None:
        user = await user_repo.find_by_id(session, user_id) if user_id is not None else None
        if user is None or user.role != UserRole.ADMIN.value:
            raise PermissionDeniedError(
                f"only an admin may {what} the global kill switch",
                details={"scope": KillScope.GLOBAL.value},
            )

    async def _stop(
        self, switch: KillSwitch, accounts: list[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[str, Any]:
        """Cancel, pause, flatten (see the module doc); returns what was done."""
        cancelled: list[str] = []
        why = f"cancelled by the kill switch ({switch.reason})"
        for owner, account_id in accounts:
            done = await self._lifecycle.cancel_all(owner, account_id=account_id, reason=why)
            cancelled.extend(str(order.id) for order in done.items)
        async with self._database.database.read() as session:
            agents = await agent_repo.running_on_accounts(
                session, [account for _, account in accounts]
            )
        reason = f"kill switch: {switch.reason}"
        for owner, agent_id in agents:
            try:
                await self._agents.pause_agent(owner, agent_id, reason=reason)
            except NotFoundError:
                continue  # deleted meanwhile
        flattened: list[dict[str, str]] = []
        skipped: list[dict[str, str]] = []
        if switch.flatten:
            for owner, account_id in accounts:
                try:
                    closed = await self._lifecycle.close_all(
                        owner, account_id=account_id, flatten=True
                    )
                except AppError as e:
                    skipped.append({"account_id": str(account_id), "reason": e.message})
                    continue
                flattened.extend(
                    {
                        "account_id": str(account_id),
                        "symbol": c.symbol,
                        "order_id": str(c.order.id),
                        "filled": str(c.order.filled_quantity),
                    }
                    for c in closed.items
                )
                skipped.extend(
                    {"account_id": str(account_id), "symbol": s.symbol, "reason": s.message}
                    for s in closed.skipped
                )
        return {
            "accounts": len(accounts),
            "orders_cancelled": cancelled,
            "agents_paused": [str(agent_id) for _, agent_id in agents],
            "positions_flattened": flattened,
            "flatten_skipped": skipped,
        }

    async def release(self, user_id: uuid.UUID, switch_id: uuid.UUID) -> KillSwitchRead:
        """Orders pass again; paused agents stay paused. 409 when already released."""
        async with self._database.database.transaction() as session:
            switch = await risk_repo.find_switch(session, switch_id, user_id=user_id)
            if switch is None:
                raise NotFoundError(
                    f"kill switch {switch_id} not found", details={"kill_switch_id": str(switch_id)}
                )
            if switch.scope == KillScope.GLOBAL.value:
                await self._require_admin(session, user_id, "release")
            if switch.released_at is not None:
                raise ConflictError(
                    f"kill switch {switch_id} was released at {switch.released_at.isoformat()}",
                    details={"kill_switch_id": str(switch_id)},
                )
            switch.released_at, switch.released_by = utcnow(), user_id
            await session.flush()
            await risk_repo.bump_risk_version(
                session, user_id=switch.user_id, account_id=switch.account_id
            )
            read = switch_read(switch)
        log.warning("kill_switch_released", switch_id=str(switch_id))
        return read

    async def list_switches(self, user_id: uuid.UUID, *, engaged_only: bool) -> KillSwitchList:
        """The user's switches and the global ones, newest first (at most 200)."""
        async with self._database.database.read() as session:
            rows = await risk_repo.switches_of(session, user_id=user_id, engaged_only=engaged_only)
            items = [switch_read(row) for row in rows]
        return KillSwitchList(items=items, count=len(items))
