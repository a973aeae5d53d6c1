"""The seed loader: what it inserts, and that a second run inserts nothing."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from connectors.universe import DEFAULT_UNIVERSE
from database.connection import Database
from database.orm import (
    AccountBalance,
    Agent,
    Base,
    Strategy,
    TradingAccount,
    TradingPair,
)
from database.orm.types import utcnow
from database.seeds import SeedReport, load_seed_data, seed_is_loaded
from models.strategy_params import parse_parameters
from tests.factories import create_user

FULL = SeedReport(strategies=4, trading_pairs=12, agents=4, accounts=4, balances=4)


async def _load(db: Database, user_id: uuid.UUID) -> SeedReport:
    async with db.transaction() as session:
        return await load_seed_data(session, user_id=user_id)


async def _is_loaded(db: Database, user_id: uuid.UUID) -> bool:
    async with db.read() as session:
        return await seed_is_loaded(session, user_id=user_id)


async def _row_counts(db: Database) -> dict[str, int]:
    async with db.read() as session:
        return {
            table.name: await session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


class TestLoadSeedData:
    async def test_loads_everything_for_a_new_user(self, db: Database) -> None:
        user = await create_user(db)

        assert not await _is_loaded(db, user.id)
        assert await _load(db, user.id) == FULL
        assert await _is_loaded(db, user.id)

    async def test_second_call_inserts_nothing(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)
        before = await _row_counts(db)

        report = await _load(db, user.id)

        assert report == SeedReport()
        assert report.inserted == 0
        assert await _row_counts(db) == before

    async def test_concurrent_loads_insert_once(self, db: Database) -> None:
        # Two instances starting together: the lock (PostgreSQL) or BEGIN IMMEDIATE
        # (SQLite) makes the second see the first's rows instead of colliding.
        user = await create_user(db)

        reports = await asyncio.gather(_load(db, user.id), _load(db, user.id))

        assert sorted(r.inserted for r in reports) == [0, FULL.inserted]
        assert (await _row_counts(db))["agents"] == 4

    async def test_completes_a_partial_seed(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)
        async with db.transaction() as session:
            await session.execute(delete(AccountBalance).where(AccountBalance.user_id == user.id))
            await session.execute(delete(Strategy).where(Strategy.name == "Bollinger Bands"))
        assert not await _is_loaded(db, user.id)

        report = await _load(db, user.id)

        assert report == SeedReport(strategies=1, balances=4)
        assert await _is_loaded(db, user.id)

    async def test_a_second_user_gets_their_own_rows_and_shares_the_pairs(
        self, db: Database
    ) -> None:
        first, second = await create_user(db), await create_user(db)
        await _load(db, first.id)

        assert not await _is_loaded(db, second.id)
        assert await _load(db, second.id) == SeedReport(
            strategies=4, agents=4, accounts=4, balances=4
        )
        assert (await _row_counts(db))["trading_pairs"] == 12

    async def test_does_not_bring_back_a_deleted_sample_agent(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)
        async with db.transaction() as session:
            alpha = await session.scalar(
                select(Agent).where(Agent.user_id == user.id, Agent.name == "Alpha Trader")
            )
            assert alpha is not None
            alpha.deleted_at = utcnow()

        assert await _load(db, user.id) == SeedReport()
        assert await _is_loaded(db, user.id)


class TestSeedContent:
    async def test_strategies_are_the_seed_documents(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)

        async with db.read() as session:
            rows = (
                await session.scalars(select(Strategy).where(Strategy.user_id == user.id))
            ).all()

        assert {(s.name, s.strategy_type, s.risk_level) for s in rows} == {
            ("Moving Average Crossover", "trend_following", "medium"),
            ("RSI Mean Reversion", "mean_reversion", "low"),
            ("Bollinger Bands", "mean_reversion", "medium"),
            ("Momentum Scanner", "momentum", "high"),
        }
        for row in rows:  # each runs as its type's built-in, stored as the API stores it
            params = parse_parameters(row.strategy_type, row.parameters)  # type: ignore[arg-type]
            assert params.model_dump(mode="json") == row.parameters
            assert (row.symbols, row.timeframe) == (["BTC/USD", "ETH/USD"], "1h")
        assert all(s.is_active for s in rows)

    async def test_pairs_match_the_simulated_exchange(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)

        async with db.read() as session:
            pairs = (await session.scalars(select(TradingPair))).all()

        assert {p.exchange for p in pairs} == {"simulated"}
        assert {p.symbol for p in pairs} == set(DEFAULT_UNIVERSE)
        assert sum(p.asset_class == "crypto" for p in pairs) == 8
        assert sum(p.asset_class == "equity" for p in pairs) == 4
        for pair in pairs:
            rules = DEFAULT_UNIVERSE[pair.symbol].rules
            assert (pair.base_asset, pair.quote_asset) == (rules.base_asset, rules.quote_asset)
            assert pair.asset_class == rules.asset_class.value
            assert pair.tick_size == rules.tick_size
            assert pair.step_size == rules.step_size
            assert pair.min_quantity == rules.min_quantity
            assert pair.max_quantity == rules.max_quantity
            assert pair.min_notional == rules.min_notional
            assert (pair.maker_fee_bps, pair.taker_fee_bps) == (
                rules.maker_fee_bps,
                rules.taker_fee_bps,
            )

    async def test_each_agent_has_a_funded_paper_account(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)

        async with db.read() as session:
            agents = (
                await session.scalars(
                    select(Agent)
                    .where(Agent.user_id == user.id)
                    .options(selectinload(Agent.accounts).selectinload(TradingAccount.balances))
                )
            ).all()

            strategy_names = set(
                await session.scalars(select(Strategy.name).where(Strategy.user_id == user.id))
            )

        assert {a.llm_provider for a in agents} == {"local", "openai", "anthropic", "openrouter"}
        assert len({a.agent_type for a in agents}) == 4
        for agent in agents:
            assert agent.status == "inactive"
            assert agent.deleted_at is None
            assert agent.symbols
            assert agent.strategies
            assert set(agent.strategies) <= strategy_names
            (account,) = agent.accounts
            assert account.account_name == "Primary Account"
            assert (account.account_type, account.exchange) == ("paper", "simulated")
            assert account.user_id == user.id
            assert account.initial_balance == agent.paper_balance
            (balance,) = account.balances
            assert (balance.asset, balance.free, balance.locked) == (
                "USD",
                agent.paper_balance,
                Decimal(0),
            )

    async def test_alpha_trader_is_the_seed_documents_agent(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)

        async with db.read() as session:
            alpha = await session.scalar(select(Agent).where(Agent.name == "Alpha Trader"))

        assert alpha is not None
        assert alpha.agent_type == "momentum_trader"
        assert alpha.strategies == ["Moving Average Crossover", "Momentum Scanner"]
        assert alpha.paper_balance == Decimal(100)
        assert alpha.risk_tolerance == Decimal("0.6")
        assert alpha.personality == {
            "aggression": "0.7",
            "patience": "0.4",
            "analysis_depth": "high",
        }

    async def test_the_local_agent_has_no_model_cost(self, db: Database) -> None:
        user = await create_user(db)
        await _load(db, user.id)

        async with db.read() as session:
            local = (
                await session.scalars(select(Agent).where(Agent.llm_provider == "local"))
            ).one()

        assert local.daily_cost_budget == 0
        assert local.is_enabled
