"""Load the starting data (database/seeds/catalog.py) for a user, idempotently.

Each seed row is inserted only when missing, so a second call inserts nothing and a
partly seeded database is completed. A seed agent the user deleted (soft delete) still
counts as present and is not brought back. The caller owns the transaction: this module
flushes, never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import AccountBalance, Agent, Strategy, TradingAccount, TradingPair
from database.seeds.catalog import (
    AGENTS,
    PRIMARY_ACCOUNT_NAME,
    SIMULATED_EXCHANGE,
    STRATEGIES,
    TRADING_PAIRS,
)
from models.enums import AccountType, AgentStatus

log = structlog.get_logger(__name__)

# Two instances starting together against one PostgreSQL seed one after the other.
_SEED_LOCK_KEY = 7_261_943_002
_AGENT_NAMES = tuple(agent.name for agent in AGENTS)


@dataclass(frozen=True)
class SeedReport:
    """How many rows of each kind one call inserted."""

    strategies: int = 0
    trading_pairs: int = 0
    agents: int = 0
    accounts: int = 0
    balances: int = 0

    @property
    def inserted(self) -> int:
        return self.strategies + self.trading_pairs + self.agents + self.accounts + self.balances


async def load_seed_data(session: AsyncSession, *, user_id: uuid.UUID) -> SeedReport:
    """Inserts whatever seed rows the user lacks; the trading pairs are shared by all users."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SEED_LOCK_KEY})

    missing_strategies = await _missing_strategies(session, user_id)
    missing_pairs = await _missing_pairs(session)
    missing_agents = await _missing_agents(session, user_id)
    strategies = [
        Strategy(
            user_id=user_id,
            name=seed.name,
            description=seed.description,
            strategy_type=seed.strategy_type,
            risk_level=seed.risk_level,
            parameters=dict(seed.parameters),
            symbols=list(seed.symbols),
            timeframe=seed.timeframe,
        )
        for seed in STRATEGIES
        if seed.name in missing_strategies
    ]
    pairs = [
        TradingPair(
            exchange=SIMULATED_EXCHANGE,
            symbol=seed.symbol,
            base_asset=seed.base_asset,
            quote_asset=seed.quote_asset,
            asset_class=seed.asset_class,
            tick_size=seed.tick_size,
            step_size=seed.step_size,
            min_quantity=seed.min_quantity,
            max_quantity=seed.max_quantity,
            min_notional=seed.min_notional,
            maker_fee_bps=seed.maker_fee_bps,
            taker_fee_bps=seed.taker_fee_bps,
        )
        for seed in TRADING_PAIRS
        if seed.symbol in missing_pairs
    ]
    agents = [
        Agent(
            id=uuid.uuid4(),
            user_id=user_id,
            name=seed.name,
            agent_type=seed.agent_type,
            status=AgentStatus.INACTIVE.value,
            personality=dict(seed.personality),
            strategies=list(seed.strategies),
            symbols=list(seed.symbols),
            paper_balance=seed.paper_balance,
            risk_tolerance=seed.risk_tolerance,
            max_position_pct=seed.max_position_pct,
            llm_provider=seed.llm_provider,
            llm_model=seed.llm_model,
            decision_interval_seconds=seed.decision_interval_seconds,
            daily_cost_budget=seed.daily_cost_budget,
        )
        for seed in AGENTS
        if seed.name in missing_agents
    ]
    session.add_all([*strategies, *pairs, *agents])
    await session.flush()

    accounts = [
        TradingAccount(
            id=uuid.uuid4(),
            user_id=user_id,
            agent_id=agent.id,
            account_name=PRIMARY_ACCOUNT_NAME,
            account_type=AccountType.PAPER.value,
            exchange=SIMULATED_EXCHANGE,
            base_currency="USD",
            initial_balance=agent.paper_balance,
        )
        for agent in await _agents_without_account(session, user_id)
    ]
    session.add_all(accounts)
    await session.flush()

    balances = [
        AccountBalance(
            user_id=user_id,
            account_id=account.id,
            asset=account.base_currency,
            free=account.initial_balance,
        )
        for account in await _accounts_without_balance(session, user_id)
    ]
    session.add_all(balances)
    await session.flush()

    report = SeedReport(
        strategies=len(strategies),
        trading_pairs=len(pairs),
        agents=len(agents),
        accounts=len(accounts),
        balances=len(balances),
    )
    if report.inserted:
        log.info("seed_data_loaded", user_id=str(user_id), **vars(report))
    return report


async def seed_is_loaded(session: AsyncSession, *, user_id: uuid.UUID) -> bool:
    """True when the user has every seed row, so `load_seed_data` would insert nothing."""
    return not (
        await _missing_strategies(session, user_id)
        or await _missing_pairs(session)
        or await _missing_agents(session, user_id)
        or await _agents_without_account(session, user_id)
        or await _accounts_without_balance(session, user_id)
    )


async def _missing_strategies(session: AsyncSession, user_id: uuid.UUID) -> set[str]:
    names = {seed.name for seed in STRATEGIES}
    present = await session.scalars(
        select(Strategy.name).where(Strategy.user_id == user_id, Strategy.name.in_(names))
    )
    return names - set(present)


async def _missing_pairs(session: AsyncSession) -> set[str]:
    symbols = {seed.symbol for seed in TRADING_PAIRS}
    present = await session.scalars(
        select(TradingPair.symbol).where(
            TradingPair.exchange == SIMULATED_EXCHANGE, TradingPair.symbol.in_(symbols)
        )
    )
    return symbols - set(present)


async def _missing_agents(session: AsyncSession, user_id: uuid.UUID) -> set[str]:
    # Deleted agents count: a user who deleted a sample agent does not get it back.
    present = await session.scalars(
        select(Agent.name).where(Agent.user_id == user_id, Agent.name.in_(_AGENT_NAMES))
    )
    return set(_AGENT_NAMES) - set(present)


async def _agents_without_account(session: AsyncSession, user_id: uuid.UUID) -> list[Agent]:
    """Live seed agents that have no primary account."""
    query = (
        select(Agent)
        .outerjoin(
            TradingAccount,
            and_(
                TradingAccount.agent_id == Agent.id,
                TradingAccount.account_name == PRIMARY_ACCOUNT_NAME,
            ),
        )
        .where(
            Agent.user_id == user_id,
            Agent.name.in_(_AGENT_NAMES),
            Agent.deleted_at.is_(None),
            TradingAccount.id.is_(None),
        )
        .order_by(Agent.name)
    )
    return list(await session.scalars(query))


async def _accounts_without_balance(
    session: AsyncSession, user_id: uuid.UUID
) -> list[TradingAccount]:
    """Primary accounts of live seed agents with no row for their base currency."""
    query = (
        select(TradingAccount)
        .join(Agent, Agent.id == TradingAccount.agent_id)
        .outerjoin(
            AccountBalance,
            and_(
                AccountBalance.account_id == TradingAccount.id,
                AccountBalance.asset == TradingAccount.base_currency,
            ),
        )
        .where(
            TradingAccount.user_id == user_id,
            TradingAccount.account_name == PRIMARY_ACCOUNT_NAME,
            Agent.name.in_(_AGENT_NAMES),
            Agent.deleted_at.is_(None),
            AccountBalance.id.is_(None),
        )
        .order_by(TradingAccount.id)
    )
    return list(await session.scalars(query))
