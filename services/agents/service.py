"""AI agents: their configuration, their lifecycle, their schedule and coordination.

One agent's decision cycle (context, model, risk, execution, the decision log and its
events) is services/agents/cycle.py, coordination services/agents/coordinator.py; this
service decides when a cycle runs and for whom.

Status: inactive -> active (start; refused with the reason when a provider cannot be
used or a model's cost is unknown without a token budget) -> paused (daily budget
spent; lifted at the next UTC midnight, services/agents/resume.py) / error (the
provider became unusable, or AGENT_MAX_INVALID_ANSWERS invalid answers in a row) /
inactive (stop, which wins over a pending resume). Each change is an
`agent_status` event. Active agents resume after a restart. One agent never runs two
cycles at once: its in-process lock is kept here (a coordination view takes it too);
the cycle takes it, and a cache lock across instances.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.exceptions import NotFoundError
from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask, wait_event
from database.orm import Agent, TradingAccount
from database.orm.types import utcnow
from database.repositories import agents as agents_repo
from database.repositories.accounts import create_paper_account
from models.agents import (
    AgentCreate,
    AgentRead,
    AgentStats,
    AgentStatusRead,
    AgentUpdate,
    CoordinateRequest,
    CoordinationRead,
    DecisionDetailRead,
    DecisionQuery,
    DecisionRead,
)
from models.base import Page
from models.calibration import Calibration
from models.decisions import Decision
from models.enums import (
    AgentStatus,
    DecisionTrigger,
)
from models.events import Channel, EventType
from models.replay import ReplayRead, ReplayRequest
from services.agents.choice import (
    ModelChoice,
    check_deadline,
    check_name,
    invalid_answer,
    invalid_streak,
    resolve_symbols,
)
from services.agents.context import (
    ContextBuilder,
    last_decided,
    live_agents,
    owned_agent,
    spent_today,
)
from services.agents.coordinator import Coordinator
from services.agents.cycle import BudgetSpentError as BudgetSpentError
from services.agents.cycle import DecisionCycle
from services.agents.decision_log import DecisionLog
from services.agents.replay import Replayer
from services.agents.resume import ROLLED_OVER, PausedAgents, lift, next_utc_midnight
from services.agents.updates import check_fixed
from services.infra.cache import CacheService, LockNotAcquiredError
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.llm.service import LLMService
from services.market_data.service import MarketDataService
from services.paper_trading.lifecycle import PaperLifecycle
from services.paper_trading.service import PaperTradingService
from services.portfolio.service import PortfolioService

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Scheduled:
    agent_id: uuid.UUID
    user_id: uuid.UUID
    interval: float
    next_at: float


class AgentService:
    def __init__(
        self,
        database: DatabaseService,
        market_data: MarketDataService,
        paper_trading: PaperTradingService,
        portfolio: PortfolioService,
        llm: LLMService,
        event_bus: EventBus,
        cache: CacheService,
        settings: Settings,
        lifecycle: PaperLifecycle,
    ) -> None:
        self._database = database
        self._market = market_data
        self._trading = paper_trading
        self._lifecycle = lifecycle
        self._llm = llm
        self._bus = event_bus
        self._settings = settings
        self._config = settings.agents
        self._choice = ModelChoice(llm)
        self._schedule: dict[uuid.UUID, _Scheduled] = {}
        self._inflight: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._context = ContextBuilder(database, market_data, portfolio, settings.agents)
        self._decisions = DecisionLog(database, market_data, settings.agents)
        self._decision_cycle = DecisionCycle(
            market_data,
            paper_trading,
            portfolio,
            llm,
            event_bus,
            cache,
            self._context,
            self._decisions,
            lock=self._lock,
            set_status=self._set_status,
            publish=self._publish,
            deadline_seconds=self._config.cycle_deadline_seconds,
            lock_seconds=self._config.cycle_lock_seconds,
        )
        self._coordinator = Coordinator(
            database, market_data, self._context, self._decisions, self._decision_cycle, self._lock
        )
        self._wake = asyncio.Event()
        self._loop = SupervisedTask("agent_scheduler", self._run)
        self.cycle_errors = 0
        # Wall clock (UTC) of budget windows and resumes; tests set their own.
        self.clock: Callable[[], datetime] = utcnow
        self._paused = PausedAgents()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        check_deadline(self._settings)
        closed = await self._decisions.close_interrupted()
        if closed:
            log.warning("interrupted_decisions_closed", count=closed)
        async with self._database.database.read() as session:
            active = await agents_repo.active_agents(session)
            decided = await last_decided(session, [agent.id for agent in active])
            for agent in active:
                self._plan_next(agent, decided.get(agent.id))
            await self._paused.load(session)
        log.info("agents_resumed", count=len(self._schedule), paused=len(self._paused))
        if self._config.scheduler_enabled:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._schedule.clear()
        self._paused.clear()

    async def health(self) -> ServiceHealth:
        data = {
            "active_agents": len(self._schedule),
            "running_cycles": len(self._inflight),
            "cycles": self._decision_cycle.cycles,
            "cycle_errors": self.cycle_errors,
            "scheduler": self._config.scheduler_enabled,
        }
        if self._config.scheduler_enabled and not self._loop.running:
            return ServiceHealth.degraded(
                "agent scheduler not running", **data, last_error=self._loop.last_error
            )
        return ServiceHealth.healthy(f"{len(self._schedule)} active agents", **data)

    # -- the scheduler ---------------------------------------------------------------

    def _plan_next(self, agent: Agent, last_decided_at: datetime | None = None) -> None:
        """Due now, or one interval after its last decision when it resumes."""
        interval = float(agent.decision_interval_seconds)
        now = time.monotonic()
        next_at = now
        if last_decided_at is not None:
            waited = (utcnow() - last_decided_at).total_seconds()
            next_at = now + max(0.0, interval - waited)
        self._schedule[agent.id] = _Scheduled(agent.id, agent.user_id, interval, next_at)
        self._wake.set()

    def _unschedule(self, agent_id: uuid.UUID) -> None:
        self._schedule.pop(agent_id, None)

    async def _run(self) -> None:
        tick = self._config.scheduler_tick_seconds
        while True:
            self._wake.clear()
            now = time.monotonic()
            for entry in list(self._schedule.values()):
                if entry.next_at <= now and entry.agent_id not in self._inflight:
                    entry.next_at = now + entry.interval
                    self._inflight[entry.agent_id] = asyncio.create_task(
                        self._scheduled_cycle(entry), name=f"agent-cycle-{entry.agent_id}"
                    )
            await self.resume_due()
            await wait_event(self._wake, tick)

    async def resume_due(self) -> list[uuid.UUID]:
        """Budget-paused agents whose pause has lifted (the UTC day rolled over) made
        active again and announced with the reason; the ids resumed."""
        now, resumed = self.clock(), []
        for agent_id, user_id in self._paused.due(now):
            try:
                async with self._database.database.transaction() as session:
                    agent, lifted = await lift(session, user_id, agent_id, now)
            except NotFoundError:
                continue  # deleted meanwhile
            if agent.status == AgentStatus.ACTIVE.value and agent.id not in self._schedule:
                self._plan_next(agent)  # or resumed by another instance
            if lifted:
                resumed.append(agent_id)
                log.info("agent_resumed", agent_id=str(agent_id), reason=ROLLED_OVER)
                await self._announce_status(
                    user_id, agent_id, AgentStatus.PAUSED.value, AgentStatus.ACTIVE, ROLLED_OVER
                )
        return resumed

    async def _scheduled_cycle(self, entry: _Scheduled) -> None:
        try:
            await self._cycle(entry.user_id, entry.agent_id, DecisionTrigger.SCHEDULED)
        except LockNotAcquiredError:
            log.info("agent_cycle_skipped", agent_id=str(entry.agent_id), why="held elsewhere")
        except BudgetSpentError:
            pass  # paused, and said so
        except NotFoundError:
            self._unschedule(entry.agent_id)
        except Exception:
            self.cycle_errors += 1
            log.exception("agent_cycle_failed", agent_id=str(entry.agent_id))
        finally:
            self._inflight.pop(entry.agent_id, None)

    def _lock(self, agent_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(agent_id)
        if lock is None:
            lock = self._locks[agent_id] = asyncio.Lock()
        return lock

    # -- CRUD ------------------------------------------------------------------------

    async def create_agent(self, user_id: uuid.UUID, body: AgentCreate) -> AgentRead:
        provider = self._choice.provider_name(body.llm_provider or self._llm.default_provider())
        model = body.llm_model or self._choice.default_model(provider)
        fallbacks = self._choice.fallbacks(body.llm_fallbacks, provider, model)
        self._choice.check_costs(provider, model, fallbacks, body.daily_token_budget)
        symbols = resolve_symbols(self._market, body.symbols)
        paper = self._settings.paper
        async with self._database.database.transaction() as session:
            agent = Agent(
                id=uuid.uuid4(),
                user_id=user_id,
                name=body.name,
                agent_type=body.agent_type,
                status=AgentStatus.INACTIVE.value,
                personality=body.personality.stored(),
                strategies=list(body.strategies),
                symbols=symbols,
                paper_balance=body.paper_balance,
                risk_tolerance=body.risk_tolerance,
                max_position_pct=body.max_position_pct,
                llm_provider=provider,
                llm_model=model,
                decision_interval_seconds=body.decision_interval_seconds,
                daily_cost_budget=body.daily_cost_budget,
                daily_token_budget=body.daily_token_budget,
                llm_fallbacks=fallbacks,
            )
            await check_name(session, user_id, body.name, None)
            await agents_repo.add(session, agent)
            account = await create_paper_account(
                session,
                user_id,
                name=f"Agent {body.name}"[:100],
                exchange=self._market.exchange_name,
                base_currency=paper.base_currency,
                initial_balance=body.paper_balance,
                agent_id=agent.id,
            )
            read = self._read(agent, account)
        log.info("agent_created", agent_id=str(agent.id), provider=agent.llm_provider)
        return read

    @staticmethod
    def _read(
        agent: Agent,
        account: TradingAccount,
        stats: AgentStats | None = None,
        last_decision_at: datetime | None = None,
    ) -> AgentRead:
        fields = {
            name: getattr(agent, name) for name in AgentRead.model_fields if hasattr(agent, name)
        }
        return AgentRead.model_validate(
            fields
            | {"account_id": account.id, "stats": stats, "last_decision_at": last_decision_at}
        )

    async def _read_in(
        self, session: AsyncSession, agent: Agent, account: TradingAccount
    ) -> AgentRead:
        """The agent with its account's stats and its last decision time."""
        decided = await last_decided(session, [agent.id])
        stats = await self._context.stats(session, account)
        return self._read(agent, account, stats, decided.get(agent.id))

    async def list_agents(self, user_id: uuid.UUID) -> list[AgentRead]:
        async with self._database.database.read() as session:
            rows = await live_agents(session, user_id)
            decided = await last_decided(session, [agent.id for agent, _ in rows])
            return [
                self._read(a, acc, await self._context.stats(session, acc), decided.get(a.id))
                for a, acc in rows
            ]

    async def get_agent(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> AgentRead:
        async with self._database.database.read() as session:
            agent, account = await owned_agent(session, user_id, agent_id)
            return await self._read_in(session, agent, account)

    async def update_agent(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, body: AgentUpdate
    ) -> AgentRead:
        """The fields sent change; the agent as created or as read is accepted (see
        AgentUpdate): fixed fields must be unchanged, read-only ones are ignored."""
        changes = body.changes()
        async with self._database.database.transaction() as session:
            agent, account = await owned_agent(session, user_id, agent_id)
            check_fixed(agent, account, body)
            if "name" in changes:
                await check_name(session, user_id, changes["name"], agent_id)
            if body.symbols is not None:
                changes["symbols"] = resolve_symbols(self._market, body.symbols)
            if body.personality is not None:
                changes["personality"] = body.personality.stored()
            provider = agent.llm_provider
            if body.llm_provider is not None:
                provider = changes["llm_provider"] = self._choice.provider_name(body.llm_provider)
                # Another provider without a model: its default, never the old one's.
                if provider != agent.llm_provider and body.llm_model is None:
                    changes["llm_model"] = self._choice.default_model(provider)
            model = changes.get("llm_model", agent.llm_model)
            fallbacks = agent.llm_fallbacks
            if body.llm_fallbacks is not None:
                fallbacks = changes["llm_fallbacks"] = self._choice.fallbacks(
                    body.llm_fallbacks, provider, model
                )
            tokens = changes.get("daily_token_budget", agent.daily_token_budget)
            self._choice.check_costs(provider, model, fallbacks, tokens)
            if agent.status == AgentStatus.ACTIVE.value:
                self._choice.check_usable(provider, model, fallbacks)
            for name, value in changes.items():
                setattr(agent, name, value)
            agent.updated_at = utcnow()
            await session.flush()
            read = await self._read_in(session, agent, account)
        if agent.id in self._schedule:
            self._schedule[agent.id].interval = float(agent.decision_interval_seconds)
        return read

    async def delete_agent(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> None:
        """Stops the agent, cancels its open orders, keeps its history (soft delete)."""
        async with self._lock(agent_id):
            async with self._database.database.read() as session:
                _, account = await owned_agent(session, user_id, agent_id)
            self._unschedule(agent_id)
            cancelled = len(
                (await self._lifecycle.cancel_all(user_id, account_id=account.id)).items
            )
            async with self._database.database.transaction() as session:
                agent, account = await owned_agent(session, user_id, agent_id)
                previous = agent.status
                agent.status = AgentStatus.INACTIVE.value
                agent.status_reason = "deleted"
                agent.paused_until = None
                agent.deleted_at = utcnow()
                account.is_active = False
        log.info("agent_deleted", agent_id=str(agent_id), orders_cancelled=cancelled)
        await self._announce_status(user_id, agent_id, previous, AgentStatus.INACTIVE, "deleted")

    # -- status ----------------------------------------------------------------------

    async def start_agent(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> AgentRead:
        """Active from now on; 422 with the reason when its provider cannot be used."""
        async with self._database.database.transaction() as session:
            agent, account = await owned_agent(session, user_id, agent_id)
            self._choice.check_agent(agent)
            previous = agent.status
            agent.status = AgentStatus.ACTIVE.value
            agent.status_reason = None
            agent.paused_until = None
            await session.flush()
            read = await self._read_in(session, agent, account)
        self._paused.hold(agent_id, user_id, None)
        self._plan_next(agent)
        await self._announce_status(user_id, agent_id, previous, AgentStatus.ACTIVE, None)
        return read

    async def stop_agent(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> AgentRead:
        """Inactive from now on, a pending budget resume cancelled; a cycle finishes."""
        async with self._database.database.transaction() as session:
            agent, account = await owned_agent(session, user_id, agent_id)
            previous = agent.status
            agent.status = AgentStatus.INACTIVE.value
            agent.status_reason = "stopped by the user"
            agent.paused_until = None  # a stop wins over a pending resume
            await session.flush()
            read = await self._read_in(session, agent, account)
        self._unschedule(agent_id)
        self._paused.hold(agent_id, user_id, None)
        await self._announce_status(
            user_id, agent_id, previous, AgentStatus.INACTIVE, "stopped by the user"
        )
        return read

    async def pause_agent(self, user_id: uuid.UUID, agent_id: uuid.UUID, *, reason: str) -> None:
        """Paused with the reason until its user starts it again (a kill switch)."""
        await self._set_status(user_id, agent_id, AgentStatus.PAUSED, reason)

    async def _set_status(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        status: AgentStatus,
        reason: str,
        *,
        until_rollover: bool = False,
    ) -> None:
        until = next_utc_midnight(self.clock()) if until_rollover else None
        async with self._database.database.transaction() as session:
            agent, _ = await owned_agent(session, user_id, agent_id)
            previous = agent.status
            agent.status = status.value
            agent.status_reason = reason
            agent.paused_until = until
        if status is not AgentStatus.ACTIVE:
            self._unschedule(agent_id)
        self._paused.hold(agent_id, user_id, until)
        log.warning("agent_status_changed", agent_id=str(agent_id), status=status, reason=reason)
        await self._announce_status(user_id, agent_id, previous, status, reason)

    async def _announce_status(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        previous: str,
        status: AgentStatus,
        reason: str | None,
    ) -> None:
        data = {
            "agent_id": str(agent_id),
            "status": status.value,
            "previous_status": previous,
            "reason": reason,
        }
        await self._publish(Channel.AGENTS, EventType.AGENT_STATUS, data, user_id)

    async def _publish(
        self, channel: str, event_type: str, data: dict[str, Any], user_id: uuid.UUID
    ) -> None:
        try:
            await self._bus.publish(channel, event_type, data, user_id=user_id)
        except Exception:  # committed already; a lost event is logged, never raised
            log.exception("event_publish_failed", channel=channel, event_type=event_type)

    async def statuses(self, user_id: uuid.UUID) -> list[AgentStatusRead]:
        now_wall, now = utcnow(), time.monotonic()
        async with self._database.database.read() as session:
            rows = await live_agents(session, user_id)
            decided = await last_decided(session, [agent.id for agent, _ in rows])
            reads = []
            for agent, account in rows:
                entry = self._schedule.get(agent.id)
                next_run = None
                if entry is not None and agent.status == AgentStatus.ACTIVE.value:
                    next_run = now_wall + timedelta(seconds=max(0.0, entry.next_at - now))
                usage = await spent_today(session, agent.id)
                reads.append(
                    AgentStatusRead(
                        id=agent.id,
                        name=agent.name,
                        status=AgentStatus(agent.status),
                        status_reason=agent.status_reason,
                        last_decision_at=decided.get(agent.id),
                        next_run_at=next_run,
                        running=agent.id in self._inflight or self._lock(agent.id).locked(),
                        paused_until=agent.paused_until,
                        cost_today=usage.cost,
                        unknown_cost_calls_today=usage.unknown_cost_calls,
                        tokens_today=usage.tokens,
                        daily_cost_budget=agent.daily_cost_budget,
                        daily_token_budget=agent.daily_token_budget,
                        stats=await self._context.stats(session, account),
                    )
                )
            return reads

    # -- the cycle -------------------------------------------------------------------

    async def execute_decision(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, decision: Decision | None = None
    ) -> DecisionRead:
        """One cycle now (no decision given), or the given decision executed through the
        same risk checks and log (a human override). Works whatever the agent's status."""
        trigger = DecisionTrigger.MANUAL if decision is None else DecisionTrigger.OVERRIDE
        return await self._cycle(user_id, agent_id, trigger, given=decision)

    async def _cycle(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        trigger: DecisionTrigger,
        *,
        given: Decision | None = None,
        coordination_id: uuid.UUID | None = None,
    ) -> DecisionRead:
        read = await self._decision_cycle.run(
            user_id, agent_id, trigger, given=given, coordination_id=coordination_id
        )
        if invalid_answer(read.status.value, read.result):
            limit = self._config.max_invalid_answers
            async with self._database.database.read() as session:
                reason = await invalid_streak(session, user_id, agent_id, limit)
            if reason is not None:
                await self._set_status(user_id, agent_id, AgentStatus.ERROR, reason)
        return read

    # -- the decision log ------------------------------------------------------------

    async def list_decisions(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, query: DecisionQuery
    ) -> Page[DecisionRead]:
        """The agent's decisions, newest first (a deleted agent's too)."""
        return await self._decisions.list_decisions(user_id, agent_id, query)

    async def get_decision(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, decision_id: uuid.UUID
    ) -> DecisionDetailRead:
        """One decision with its model call as sent and answered."""
        return await self._decisions.get_decision(user_id, agent_id, decision_id)

    async def replay_decision(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        decision_id: uuid.UUID,
        body: ReplayRequest | None = None,
    ) -> ReplayRead:
        """The decision made again on its stored context (the local rules re-run, or the
        prompt re-asked of a model) and re-planned on its stored inputs, every difference
        reported. Places nothing (services/agents/replay.py)."""
        replayer = Replayer(self._decisions, self._market, self._llm)
        return await replayer.replay(user_id, agent_id, decision_id, body)

    async def calibration(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> Calibration:
        """Win rate of the agent's executed trades by confidence."""
        return await self._decisions.calibration(user_id, agent_id)

    # -- coordination ----------------------------------------------------------------

    async def coordinate(self, user_id: uuid.UUID, body: CoordinateRequest) -> CoordinationRead:
        """Every member decides on the symbol at once; the views are combined by a
        confidence-weighted vote with a risk veto (services/agents/coordinator.py)."""
        return await self._coordinator.coordinate(user_id, body, bus=self._bus)
