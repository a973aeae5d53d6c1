"""Risk, the entry point: a user's limits, the pre-trade check every order passes, the
kill switch, alerts, the monitor, stored metrics and stress tests.

- `RiskGate` (gate.py) is installed on the paper exchange at start: every new order and
  every resting fill is checked under its account's lock.
- Limits are checked on orders at once; the monitor (monitor.py) measures them on a
  schedule and after fills, and a new or changed limit is measured on its accounts as
  it is written (its `current_value` is then true, and an alert or a kill switch it
  calls for follows at once).
- The rules and units: docs/risk.md; the metrics: docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import RiskSettings
from core.exceptions import ConflictError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask
from database.orm import TradingLimit
from database.orm.types import utcnow
from database.repositories import accounts as account_repo
from database.repositories import portfolio as portfolio_repo
from database.repositories import risk as risk_repo
from models.enums import AssetClass
from models.risk import (
    LimitCreate,
    LimitList,
    LimitRead,
    LimitType,
    LimitUpdate,
    check_limit_value,
)
from models.risk_metrics import RiskMetricsRead
from models.stress import StressTestRead, StressTestRequest
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.market_data.service import MarketDataService
from services.paper_trading import ledger
from services.paper_trading.service import PaperTradingService
from services.risk.alerts import RiskAlerts
from services.risk.gate import RiskGate, rule_of
from services.risk.history import daily_closes
from services.risk.keeper import MetricsKeeper
from services.risk.kill_switch import AgentPauser, KillSwitches, Lifecycle
from services.risk.measure import RiskMeasurer
from services.risk.monitor import RiskMonitor
from services.risk.stress import StressHolding, run_scenarios, specs_from_request, stress_read

log = structlog.get_logger(__name__)

_HORIZON_DAYS = 10


def limit_read(limit: TradingLimit) -> LimitRead:
    return LimitRead.model_validate(limit)


class RiskService:
    def __init__(
        self,
        database: DatabaseService,
        market: MarketDataService,
        trading: PaperTradingService,
        lifecycle: Lifecycle,
        agents: AgentPauser,
        event_bus: EventBus,
        settings: RiskSettings,
    ) -> None:
        self._database = database
        self._market = market
        self._trading = trading
        self._settings = settings
        self._bus = event_bus
        self.gate = RiskGate(market)
        self.alerts = RiskAlerts(database)
        self.switches = KillSwitches(database, lifecycle, agents, event_bus)
        self.monitor = RiskMonitor(database, self.gate, self.switches, event_bus, settings)
        self.measurer = RiskMeasurer(database, market, settings)
        self.keeper = MetricsKeeper(database, self.measurer, event_bus, settings)
        self.monitor.after_fill.append(self.keeper.store)
        self._loop = SupervisedTask("risk_monitor", self.monitor.run)
        self._metrics_loop = SupervisedTask("risk_metrics", self.keeper.run)
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self._trading.pre_trade = self.gate
        if self._settings.monitor_enabled:
            self._unsubscribe = self._bus.subscribe(self.monitor.on_event, wants=lambda _c: False)
            self._loop.start()
            self._metrics_loop.start()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._loop.stop()
        await self._metrics_loop.stop()
        self._trading.pre_trade = None

    async def health(self) -> ServiceHealth:
        data = {
            "orders_checked": self.gate.checked,
            "orders_refused": self.gate.refused,
            "monitor_rounds": self.monitor.rounds,
            "accounts_evaluated": self.monitor.evaluations,
            "metrics_stored": self.keeper.stored,
            "loop_crashes": self._loop.crashes + self._metrics_loop.crashes,
        }
        if self._settings.monitor_enabled and not (
            self._loop.running and self._metrics_loop.running
        ):
            return ServiceHealth.degraded(
                "risk monitor not running", **data, last_error=self._loop.last_error
            )
        return ServiceHealth.healthy("ok", **data)

    # -- limits ------------------------------------------------------------------------

    async def create_limit(self, user_id: uuid.UUID, request: LimitCreate) -> LimitRead:
        """A new limit, measured on its accounts at once; 409 when an active limit of the
        same type, account and symbol exists (change that one instead)."""
        symbol = self._market.resolve_symbol(request.symbol) if request.symbol else None
        async with self._database.database.transaction() as session:
            if request.account_id is not None:
                await account_repo.find_account(session, user_id, request.account_id)
            if request.is_active:
                existing = await risk_repo.same_limit(
                    session,
                    user_id=user_id,
                    account_id=request.account_id,
                    limit_type=request.limit_type.value,
                    symbol=symbol,
                )
                if existing is not None:
                    raise ConflictError(
                        f"an active {request.limit_type.value} limit on this scope exists "
                        f"({existing.id}): change it with PATCH",
                        details={"limit_id": str(existing.id)},
                    )
            now = utcnow()
            limit = await risk_repo.add_limit(
                session,
                TradingLimit(
                    user_id=user_id,
                    account_id=request.account_id,
                    limit_type=request.limit_type.value,
                    symbol=symbol,
                    limit_value=request.limit_value,
                    current_value=None,
                    kill_on_breach=request.kill_on_breach,
                    is_active=request.is_active,
                    created_at=now,
                    updated_at=now,
                ),
            )
            await risk_repo.bump_risk_version(
                session, user_id=user_id, account_id=request.account_id
            )
        log.info("risk_limit_created", limit_id=str(limit.id), limit_type=limit.limit_type)
        return await self._measured(user_id, limit.id, limit.account_id)

    async def list_limits(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        active: bool | None = None,
    ) -> LimitList:
        """The user's limits (holding on one account: its own and the account-wide ones)."""
        async with self._database.database.read() as session:
            if account_id is not None:
                await account_repo.find_account(session, user_id, account_id)
            rows = await risk_repo.limits_of(
                session, user_id=user_id, account_id=account_id, active=active
            )
            items = [limit_read(row) for row in rows]
        return LimitList(items=items, count=len(items))

    async def get_limit(self, user_id: uuid.UUID, limit_id: uuid.UUID) -> LimitRead:
        async with self._database.database.read() as session:
            return limit_read(await self._owned_limit(session, user_id, limit_id))

    async def update_limit(
        self, user_id: uuid.UUID, limit_id: uuid.UUID, changes: LimitUpdate
    ) -> LimitRead:
        """Changes the value, the breach action or whether it is active; measured again."""
        fields = changes.model_dump(exclude_unset=True)
        async with self._database.database.transaction() as session:
            limit = await self._owned_limit(session, user_id, limit_id)
            if fields.get("limit_value") is None:
                fields.pop("limit_value", None)
            else:
                try:
                    check_limit_value(LimitType(limit.limit_type), fields["limit_value"])
                except ValueError as e:
                    raise _invalid(str(e), fields["limit_value"]) from e
            for name in ("kill_on_breach", "is_active"):
                if name in fields and fields[name] is None:
                    fields.pop(name)
            if fields.get("is_active") and not limit.is_active:
                existing = await risk_repo.same_limit(
                    session,
                    user_id=user_id,
                    account_id=limit.account_id,
                    limit_type=limit.limit_type,
                    symbol=limit.symbol,
                )
                if existing is not None and existing.id != limit.id:
                    raise ConflictError(
                        f"another active {limit.limit_type} limit on this scope exists "
                        f"({existing.id})",
                        details={"limit_id": str(existing.id)},
                    )
            for name, value in fields.items():
                setattr(limit, name, value)
            limit.updated_at = utcnow()
            await session.flush()
            await risk_repo.bump_risk_version(session, user_id=user_id, account_id=limit.account_id)
        return await self._measured(user_id, limit_id, limit.account_id)

    async def delete_limit(self, user_id: uuid.UUID, limit_id: uuid.UUID) -> None:
        """Deleted; its alerts stay, no longer linked to it."""
        async with self._database.database.transaction() as session:
            limit = await self._owned_limit(session, user_id, limit_id)
            await risk_repo.delete_limit(session, limit)
            await risk_repo.bump_risk_version(session, user_id=user_id, account_id=limit.account_id)

    async def _owned_limit(
        self, session: AsyncSession, user_id: uuid.UUID, limit_id: uuid.UUID
    ) -> TradingLimit:
        limit = await risk_repo.find_limit(session, limit_id, user_id=user_id)
        if limit is None:
            raise NotFoundError(f"limit {limit_id} not found", details={"limit_id": str(limit_id)})
        return limit

    async def _measured(
        self, user_id: uuid.UUID, limit_id: uuid.UUID, account_id: uuid.UUID | None
    ) -> LimitRead:
        """Measure the limit's accounts now, then read it back with its current value."""
        if account_id is None:
            await self.monitor.evaluate_user(user_id)
        else:
            await self.monitor.evaluate_account(user_id, account_id)
        return await self.get_limit(user_id, limit_id)

    # -- metrics -----------------------------------------------------------------------

    async def metrics(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None,
        combined: bool,
        fresh: bool,
        horizon_days: int | None,
    ) -> RiskMetricsRead:
        """The newest stored metrics, or measured now (`fresh`, none stored yet, or
        another horizon than the stored one); measuring here stores nothing."""
        if not fresh:
            stored = await self.measurer.latest(user_id, account_id=account_id, combined=combined)
            if stored is not None and horizon_days in (None, stored.horizon_days):
                return stored
        return await self.measurer.measure(
            user_id,
            account_id=account_id,
            combined=combined,
            horizon_days=horizon_days or _HORIZON_DAYS,
        )

    # -- stress tests ------------------------------------------------------------------

    async def stress_test(self, user_id: uuid.UUID, request: StressTestRequest) -> StressTestRead:
        """The account's positions under each scenario, and the limits each would breach.
        A symbol the request names is resolved as orders resolve it (404 if unknown)."""
        specs = specs_from_request(self._resolved(request))
        async with self._database.database.read() as session:
            account = await account_repo.find_account(session, user_id, request.account_id)
            book = ledger.Book.of(account, await account_repo.balances_of(session, account.id))
            state = await self.gate.account_state(session, book)
            limits = await risk_repo.limits_of(
                session, user_id=user_id, account_id=account.id, active=True
            )
            positions = [
                p
                for p in await portfolio_repo.positions_of(session, account.id, user_id=user_id)
                if p.quantity > 0
            ]
        holdings = [
            StressHolding(
                symbol=p.symbol,
                asset_class=AssetClass(self._market.pair_rules(p.symbol).asset_class.value),
                quantity=p.quantity,
                price=self._market.mark_price(p.symbol) or p.avg_price,
            )
            for p in positions
        ]
        history = {h.symbol: await self._closes(h.symbol) for h in holdings}
        rules = [rule_of(limit) for limit in limits]
        # Pure and CPU-bound (numbers of a few ms for a few holdings, ~1 s for 500).
        results = await asyncio.to_thread(run_scenarios, state, holdings, history, rules, specs)
        return stress_read(state, results)

    def _resolved(self, request: StressTestRequest) -> StressTestRequest:
        collapse = request.single_asset_collapse
        if collapse.symbol is not None:
            collapse = collapse.model_copy(
                update={"symbol": self._market.resolve_symbol(collapse.symbol)}
            )
        custom = [
            shock.model_copy(update={"symbol": self._market.resolve_symbol(shock.symbol)})
            if shock.symbol is not None
            else shock
            for shock in request.custom
        ]
        return request.model_copy(update={"single_asset_collapse": collapse, "custom": custom})

    async def _closes(self, symbol: str) -> list[tuple[date, Decimal]]:
        """The closed daily closes the metrics read too (services/risk/history.py)."""
        by_day = await daily_closes(
            self._market, symbol, today=utcnow().date(), days=self._settings.history_days
        )
        return sorted(by_day.items())


def _invalid(message: str, value: Decimal) -> ValidationFailedError:
    return ValidationFailedError(message, details={"limit_value": str(value)})
