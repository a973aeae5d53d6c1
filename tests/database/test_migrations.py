"""The migration builds the schema the models describe, on SQLite and PostgreSQL, and
enforces the constraints autogenerate cannot compare (CHECKs, partial unique indexes,
ON DELETE rules)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, delete, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from database.connection import Database
from database.migrate import downgrade, upgrade
from database.orm import (
    AccountBalance,
    Agent,
    AgentDecision,
    Base,
    EventOutbox,
    LLMCall,
    Order,
    Strategy,
    TradingAccount,
    User,
)
from database.orm.types import utcnow
from models.strategy_params import parse_parameters
from tests.conftest import pg_admin, pg_url
from tests.factories import (
    create_account,
    create_agent,
    create_llm_call,
    create_order,
    create_position,
    create_trade,
    create_user,
)


def _diff(connection: Connection, metadata: MetaData = Base.metadata) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, not even alembic's version table."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("postgres_available")
    name = f"cival_empty_{uuid.uuid4().hex[:12]}"
    _run_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        _run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_admin(sql: str) -> None:
    asyncio.run(pg_admin(sql))


@pytest.fixture
async def empty_engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = Database(empty_database_url).engine
    yield engine
    await engine.dispose()


class TestRoundTrip:
    async def test_upgrade_downgrade_upgrade_leaves_the_full_schema(
        self, empty_engine: AsyncEngine
    ) -> None:
        model_tables = set(Base.metadata.tables)

        await upgrade(empty_engine)
        async with empty_engine.connect() as conn:
            assert await conn.run_sync(_tables) == model_tables | {"alembic_version"}

        await downgrade(empty_engine, "base")
        async with empty_engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version"}

        await upgrade(empty_engine)
        async with empty_engine.connect() as conn:
            assert await conn.run_sync(_tables) == model_tables | {"alembic_version"}
            assert await conn.run_sync(_diff) == []


class TestModelParity:
    async def test_migrated_schema_matches_the_models(self, db: Database) -> None:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []

    async def test_comparison_reports_a_column_the_migration_lacks(self, db: Database) -> None:
        # The parity test above is only worth something if the comparison can fail.
        altered = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.tables.values():
            table.to_metadata(altered)
        altered.tables["users"].append_column(Column("nickname", String(50)))

        async with db.engine.connect() as conn:
            diff = await conn.run_sync(_diff, altered)

        assert [(op[0], op[2], op[3].name) for op in diff] == [("add_column", "users", "nickname")]


class TestAgentConstraints:
    @pytest.mark.parametrize("value", ["0", "0.5", "1"])
    async def test_accepts_risk_tolerance_within_zero_and_one(
        self, db: Database, value: str
    ) -> None:
        # '1' is stored as '1.000000000000000000' on SQLite: a text CHECK would refuse it.
        agent = await create_agent(db, risk_tolerance=value)
        async with db.read() as session:
            stored = (await session.get_one(Agent, agent.id)).risk_tolerance
        assert str(stored) == value

    @pytest.mark.parametrize("value", ["-0.01", "1.01", "10"])
    async def test_refuses_risk_tolerance_outside_zero_and_one(
        self, db: Database, value: str
    ) -> None:
        with pytest.raises(IntegrityError, match="risk_tolerance"):
            await create_agent(db, risk_tolerance=value)

    async def test_refuses_an_unknown_provider(self, db: Database) -> None:
        with pytest.raises(IntegrityError, match="llm_provider"):
            await create_agent(db, llm_provider="acme")

    async def test_live_names_are_unique_per_user(self, db: Database) -> None:
        user = await create_user(db)
        await create_agent(db, user_id=user.id, name="Scout")
        await create_agent(db, name="Scout")  # another user

        with pytest.raises(IntegrityError):
            await create_agent(db, user_id=user.id, name="Scout")

    async def test_a_deleted_agent_frees_its_name(self, db: Database) -> None:
        user = await create_user(db)
        await create_agent(db, user_id=user.id, name="Scout", deleted_at=utcnow())

        await create_agent(db, user_id=user.id, name="Scout")

    async def test_a_deleted_agent_cannot_be_active(self, db: Database) -> None:
        with pytest.raises(IntegrityError, match="deleted_not_active"):
            await create_agent(db, status="active", deleted_at=utcnow())


class TestAccountConstraints:
    async def test_a_users_own_account_names_are_unique(self, db: Database) -> None:
        # agent_id is NULL here: a plain UNIQUE(user_id, agent_id, name) would allow both.
        user = await create_user(db)
        await create_account(db, user_id=user.id, account_name="Main")

        with pytest.raises(IntegrityError):
            await create_account(db, user_id=user.id, account_name="Main")

    async def test_agents_may_reuse_an_account_name(self, db: Database) -> None:
        user = await create_user(db)
        first = await create_agent(db, user_id=user.id)
        second = await create_agent(db, user_id=user.id)
        await create_account(db, user_id=user.id, agent_id=first.id, account_name="Primary")
        await create_account(db, user_id=user.id, agent_id=second.id, account_name="Primary")
        await create_account(db, user_id=user.id, account_name="Primary")

        with pytest.raises(IntegrityError):
            await create_account(db, user_id=user.id, agent_id=first.id, account_name="Primary")

    async def test_a_user_has_at_most_one_default_account(self, db: Database) -> None:
        user = await create_user(db)
        await create_account(db, user_id=user.id, is_default=True)
        await create_account(db, user_id=user.id, is_default=False)
        await create_account(db, is_default=True)  # another user

        with pytest.raises(IntegrityError):
            await create_account(db, user_id=user.id, is_default=True)

    async def test_an_agents_account_cannot_be_the_default(self, db: Database) -> None:
        agent = await create_agent(db)
        with pytest.raises(IntegrityError, match="default_has_no_agent"):
            await create_account(db, user_id=agent.user_id, agent_id=agent.id, is_default=True)

    async def test_refuses_a_negative_balance(self, db: Database) -> None:
        with pytest.raises(IntegrityError, match="free_non_negative"):
            await create_account(db, balances={"BTC": "-0.000000000000000001"})


class TestOrderConstraints:
    async def test_client_order_ids_are_unique_per_account_and_optional(self, db: Database) -> None:
        account = await create_account(db)
        other = await create_account(db)
        await create_order(db, account=account, client_order_id="abc")
        await create_order(db, account=other, client_order_id="abc")
        await create_order(db, account=account)
        await create_order(db, account=account)

        with pytest.raises(IntegrityError):
            await create_order(db, account=account, client_order_id="abc")

    async def test_a_limit_order_needs_a_price(self, db: Database) -> None:
        account = await create_account(db)
        with pytest.raises(IntegrityError, match="limit_has_price"):
            await create_order(db, account=account, order_type="limit")

    async def test_a_stop_order_needs_a_stop_price(self, db: Database) -> None:
        account = await create_account(db)
        with pytest.raises(IntegrityError, match="stop_has_stop_price"):
            await create_order(db, account=account, order_type="stop_limit", price="100")

    async def test_cannot_fill_more_than_the_quantity(self, db: Database) -> None:
        account = await create_account(db)
        with pytest.raises(IntegrityError, match="filled_within_quantity"):
            await create_order(
                db, account=account, quantity="1", filled_quantity="1.5", status="partial"
            )

    async def test_a_filled_order_is_completely_filled(self, db: Database) -> None:
        account = await create_account(db)
        await create_order(
            db,
            account=account,
            quantity="0.123456789012345678",
            filled_quantity="0.123456789012345678",
            average_price="100",
            status="filled",
        )
        with pytest.raises(IntegrityError, match="filled_means_complete"):
            await create_order(
                db, account=account, quantity="1", filled_quantity="0.5", status="filled"
            )


class TestOutboxConstraints:
    async def test_seq_is_unique_per_channel(self, db: Database) -> None:
        def event(channel: str, seq: int) -> EventOutbox:
            return EventOutbox(channel=channel, seq=seq, event_type="trade_execution", payload={})

        async with db.transaction() as session:
            session.add_all([event("trades:a", 1), event("trades:a", 2), event("trades:b", 1)])

        with pytest.raises(IntegrityError):
            async with db.transaction() as session:
                session.add(event("trades:a", 2))


class TestDeletes:
    async def test_an_agent_with_a_ledger_cannot_be_hard_deleted(self, db: Database) -> None:
        agent = await create_agent(db)
        await create_account(db, user_id=agent.user_id, agent_id=agent.id)

        with pytest.raises(IntegrityError):
            async with db.transaction() as session:
                await session.execute(delete(Agent).where(Agent.id == agent.id))

    async def test_deleting_a_user_deletes_everything_it_owns(self, db: Database) -> None:
        user = await create_user(db)
        agent = await create_agent(db, user_id=user.id)
        account = await create_account(db, user_id=user.id, agent_id=agent.id)
        order = await create_order(db, account=account, status="filled", filled_quantity="0.01")
        await create_trade(db, order=order)
        await create_position(db, account=account)
        call = await create_llm_call(db, agent=agent)
        async with db.transaction() as session:
            session.add(
                AgentDecision(
                    user_id=user.id,
                    agent_id=agent.id,
                    decision_type="trade",
                    status="executed",
                    reasoning="breakout",
                    llm_call_id=call.id,
                )
            )
        survivor = await create_account(db)

        async with db.transaction() as session:
            await session.execute(delete(User).where(User.id == user.id))

        async with db.read() as session:
            for model in (Agent, TradingAccount, AccountBalance, Order, AgentDecision):
                remaining = await session.scalar(select(func.count()).select_from(model))
                expected = 1 if model in (TradingAccount, AccountBalance) else 0
                assert remaining == expected, model.__tablename__
            assert await session.get(TradingAccount, survivor.id) is not None


class TestUnknownCostMigration:
    async def test_0007_keeps_unknown_costs_and_fills_in_who_answered(
        self, empty_database_url: str
    ) -> None:
        database = Database(empty_database_url)
        try:
            await upgrade(database.engine)
            agent = await create_agent(database)
            # Its account refers to it without CASCADE: the agents table is never rebuilt.
            await create_account(database, user_id=agent.user_id, agent_id=agent.id)
            call = await create_llm_call(database, agent=agent, provider="openai", model="o3")
            async with database.transaction() as session:
                session.add(
                    AgentDecision(
                        user_id=agent.user_id,
                        agent_id=agent.id,
                        status="error",
                        reasoning="no decision",
                        llm_call_id=call.id,
                    )
                )
                stored = await session.get(LLMCall, call.id)
                assert stored is not None
                stored.cost = None  # unknown: stored as NULL, not 0

            await downgrade(database.engine, "0006")
            async with database.engine.connect() as conn:
                costs = (await conn.execute(text("SELECT cost FROM llm_calls"))).scalars().all()
            assert [Decimal(str(c)) for c in costs] == [Decimal(0)]  # what 0006 could hold

            await upgrade(database.engine)
            async with database.engine.connect() as conn:
                answered = (
                    await conn.execute(
                        text("SELECT answered_provider, answered_model FROM agent_decisions")
                    )
                ).all()
                assert await conn.run_sync(_diff) == []
            assert [tuple(row) for row in answered] == [("openai", "o3")]
        finally:
            await database.dispose()

    async def test_0013_makes_untouched_sample_strategies_run_and_leaves_changed_ones(
        self, empty_database_url: str
    ) -> None:
        database = Database(empty_database_url)
        try:
            await upgrade(database.engine, "0012")
            user = await create_user(database)
            loaded = {  # as the seed catalog stored them before 0011
                "Moving Average Crossover": ("momentum", {"short_period": 20, "long_period": 50}),
                "Momentum Scanner": ("momentum", {"volume_threshold": "1.5", "price_change": 5}),
                "Bollinger Bands": ("mean_reversion", {"period": 20, "std_dev": 3}),  # changed
            }
            async with database.transaction() as session:
                for name, (kind, parameters) in loaded.items():
                    session.add(
                        Strategy(
                            user_id=user.id, name=name, strategy_type=kind, parameters=parameters
                        )
                    )

            await upgrade(database.engine)
            after = await _strategies(database)
            assert after["Moving Average Crossover"] == (
                "trend_following",
                {"fast_window": 20, "slow_window": 50, "average": "sma"},
            )
            assert after["Momentum Scanner"] == (
                "momentum",
                {"indicator": "roc", "window": 24, "threshold": 0.05},
            )
            assert after["Bollinger Bands"] == loaded["Bollinger Bands"]
            for kind, parameters in after.values():
                if kind != "mean_reversion":
                    parse_parameters(kind, parameters)  # type: ignore[arg-type]

            await downgrade(database.engine, "0012")
            assert await _strategies(database) == loaded
        finally:
            await database.dispose()


async def _strategies(database: Database) -> dict[str, tuple[str, dict[str, Any]]]:
    async with database.read() as session:
        rows = (await session.scalars(select(Strategy))).all()
        return {row.name: (row.strategy_type, dict(row.parameters)) for row in rows}


class TestMigrationsKeepRows:
    """A migration that rebuilds a parent table on SQLite (batch mode) drops the old
    table; with foreign keys on, that drop deletes or nulls every row referring to it
    (SQLite runs an implicit DELETE first). Every row must survive every migration."""

    async def test_down_to_0005_and_back_keeps_every_accounts_rows(
        self, empty_database_url: str
    ) -> None:
        database = Database(empty_database_url)
        try:
            await upgrade(database.engine)
            agent = await create_agent(database)
            account = await create_account(database, user_id=agent.user_id, agent_id=agent.id)
            order = await create_order(
                database, account=account, status="filled", filled_quantity="0.01"
            )
            await create_trade(database, order=order)
            await create_position(database, account=account)
            call = await create_llm_call(database, agent=agent)
            async with database.transaction() as session:
                session.add(
                    AgentDecision(
                        user_id=agent.user_id,
                        agent_id=agent.id,
                        status="executed",
                        reasoning="kept",
                        llm_call_id=call.id,
                    )
                )
            tables = ("trading_accounts", "account_balances", "orders", "trades", "positions")
            linked = ("agent_decisions", "llm_calls")

            async def counts() -> dict[str, int]:
                async with database.engine.connect() as conn:
                    found = {
                        # The names are this test's own constants.
                        table: (
                            await conn.execute(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
                        ).scalar()
                        for table in (*tables, *linked)
                    }
                    found["decision_links"] = (
                        await conn.execute(
                            text(
                                "SELECT count(*) FROM agent_decisions WHERE llm_call_id IS NOT NULL"
                            )
                        )
                    ).scalar()
                return {k: int(v or 0) for k, v in found.items()}

            before = await counts()
            assert all(before.values()), before
            await downgrade(database.engine, "0005")
            assert await counts() == before
            await upgrade(database.engine)
            assert await counts() == before
            async with database.engine.connect() as conn:
                assert await conn.run_sync(_diff) == []
        finally:
            await database.dispose()
