"""The indexes serving seed 001's listed queries (migration 0005), on SQLite and
PostgreSQL: they exist with their columns, 0005 goes down and up again, and each query's
plan reads its index, in the order the query asks, with no sort."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Uuid, bindparam, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from database.connection import Database
from database.migrate import downgrade, upgrade
from database.orm import AppLog, Base, OHLCVCandle, Order, Position, Trade
from database.orm.types import utcnow
from tests.factories import create_account, create_user


@dataclass(frozen=True)
class SeedIndex:
    seed: str
    table: str
    name: str
    columns: tuple[str, ...]
    # The query the seed's index is for, as this schema asks it (`:user_id` is bound).
    query: str


SEED_INDEXES = (
    SeedIndex(
        "idx_orders_user_status",
        "orders",
        "ix_orders_user_id_status_created_at",
        ("user_id", "status", "created_at"),
        "SELECT id FROM orders WHERE user_id = :user_id AND status = 'filled'"
        " ORDER BY created_at DESC LIMIT 50",
    ),
    SeedIndex(
        "idx_orders_symbol_created",
        "orders",
        "ix_orders_user_id_symbol_created_at",
        ("user_id", "symbol", "created_at"),
        "SELECT id FROM orders WHERE user_id = :user_id AND symbol = 'ETH/USD'"
        " ORDER BY created_at DESC LIMIT 50",
    ),
    SeedIndex(
        "idx_trades_user_executed",
        "trades",
        "ix_trades_user_id_executed_at",
        ("user_id", "executed_at"),
        "SELECT id FROM trades WHERE user_id = :user_id ORDER BY executed_at DESC LIMIT 50",
    ),
    SeedIndex(
        "idx_positions_user_symbol",
        "positions",
        "ix_positions_user_id_symbol",
        ("user_id", "symbol"),
        "SELECT id FROM positions WHERE user_id = :user_id AND symbol = 'BTC/USD'",
    ),
    # Not created: the unique key's index serves the candle query, which names the exchange.
    SeedIndex(
        "idx_market_data_symbol_time",
        "market_data_ohlcv",
        "uq_market_data_ohlcv_symbol_exchange_timeframe_open_time",
        ("symbol", "exchange", "timeframe", "open_time"),
        "SELECT id FROM market_data_ohlcv WHERE symbol = 'BTC/USD' AND exchange = 'simulated'"
        " AND timeframe = '1m' ORDER BY open_time DESC LIMIT 100",
    ),
    SeedIndex(
        "idx_signals_created",
        "trading_signals",
        "idx_signals_created",
        ("created_at",),
        "SELECT id FROM trading_signals WHERE created_at >= '2026-01-01'"
        " ORDER BY created_at DESC LIMIT 100",
    ),
    SeedIndex(
        "idx_logs_level_created",
        "app_logs",
        "ix_app_logs_level_created_at",
        ("level", "created_at"),
        "SELECT id FROM app_logs WHERE level = 'error' ORDER BY created_at DESC LIMIT 100",
    ),
)
CREATED_BY_0005 = [i for i in SEED_INDEXES if i.name.startswith("ix_")]
# The single-column indexes 0005 drops, each now the prefix of a composite one.
REPLACED_BY_0005 = {
    ("orders", "ix_orders_user_id", "user_id"),
    ("trades", "ix_trades_user_id", "user_id"),
    ("positions", "ix_positions_user_id", "user_id"),
    ("app_logs", "ix_app_logs_level", "level"),
}


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _indexes(connection: Connection, table: str) -> dict[str, list[str]]:
    """Name → columns of the table's indexes, unique constraints included."""
    inspector = inspect(connection)
    found = {
        str(i["name"]): [str(c) for c in i["column_names"]] for i in inspector.get_indexes(table)
    }
    for constraint in inspector.get_unique_constraints(table):
        found[str(constraint["name"])] = [str(c) for c in constraint["column_names"]]
    return found


async def _indexes_of(db: Database, table: str) -> dict[str, list[str]]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_indexes, table)


@pytest.mark.parametrize("index", SEED_INDEXES, ids=lambda i: i.seed)
async def test_the_index_serving_the_seed_query_exists_with_its_columns(
    db: Database, index: SeedIndex
) -> None:
    assert (await _indexes_of(db, index.table)).get(index.name) == list(index.columns)


@pytest.mark.parametrize(("table", "name", "column"), sorted(REPLACED_BY_0005))
async def test_a_replaced_index_is_gone_and_its_column_still_leads_an_index(
    db: Database, table: str, name: str, column: str
) -> None:
    indexes = await _indexes_of(db, table)

    assert name not in indexes
    assert any(columns[0] == column for columns in indexes.values())


class TestDowngrade:
    async def test_down_to_0004_restores_the_replaced_indexes_and_up_again_is_clean(
        self, db: Database
    ) -> None:
        await downgrade(db.engine, "0004")
        for table, name, column in REPLACED_BY_0005:
            assert (await _indexes_of(db, table)).get(name) == [column]
        for index in CREATED_BY_0005:
            assert index.name not in await _indexes_of(db, index.table)

        await upgrade(db.engine)
        for index in SEED_INDEXES:
            assert (await _indexes_of(db, index.table)).get(index.name) == list(index.columns)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []


async def _seed(db: Database) -> uuid.UUID:
    """Three users with two accounts each, orders in three symbols, their fills and
    positions, some log entries and a series of candles. Returns the first user's id."""
    users = [await create_user(db) for _ in range(3)]
    accounts = [await create_account(db, user_id=u.id) for u in users for _ in range(2)]
    now = utcnow()
    rows: list[Any] = []
    for a, account in enumerate(accounts):
        for s, symbol in enumerate(("BTC/USD", "ETH/USD", "SOL/USD")):
            filled = (a + s) % 2 == 0
            order = Order(
                id=uuid.uuid4(),
                user_id=account.user_id,
                account_id=account.id,
                symbol=symbol,
                side="buy",
                quantity=Decimal(1),
                status="filled" if filled else "pending",
                filled_quantity=Decimal(1) if filled else Decimal(0),
                created_at=now - timedelta(minutes=a * 3 + s),
            )
            rows.append(order)
            if filled:
                rows.append(
                    Trade(
                        user_id=account.user_id,
                        order_id=order.id,
                        account_id=account.id,
                        symbol=symbol,
                        side="buy",
                        quantity=Decimal(1),
                        price=Decimal(100),
                        fee_asset="USD",
                        liquidity="taker",
                        executed_at=order.created_at,
                    )
                )
            rows.append(
                Position(
                    user_id=account.user_id,
                    account_id=account.id,
                    symbol=symbol,
                    quantity=Decimal(1),
                    avg_price=Decimal(100),
                )
            )
    for k in range(30):
        rows.append(AppLog(level=("info", "warning", "error")[k % 3], message=f"entry {k}"))
        rows.append(
            OHLCVCandle(
                exchange="simulated",
                symbol="BTC/USD",
                timeframe="1m",
                open_time=now + timedelta(minutes=k),
                close_time=now + timedelta(minutes=k + 1),
                open=Decimal(100),
                high=Decimal(101),
                low=Decimal(99),
                close=Decimal(100),
            )
        )
    async with db.transaction() as session:
        # Orders first: the fills reference them.
        session.add_all([row for row in rows if isinstance(row, Order)])
        await session.flush()
        session.add_all([row for row in rows if not isinstance(row, Order)])
    return users[0].id


async def _plan_postgres(conn: AsyncConnection, query: str, user_id: uuid.UUID) -> dict[str, Any]:
    await conn.execute(text("ANALYZE"))
    # The tables are tiny: without this a sequential scan wins and proves nothing.
    await conn.execute(text("SET LOCAL enable_seqscan = off"))
    explain = text(f"EXPLAIN (FORMAT JSON) {query}")
    if ":user_id" in query:
        explain = explain.bindparams(bindparam("user_id", type_=Uuid))
    plan = (await conn.execute(explain, {"user_id": user_id})).scalar_one()
    root: dict[str, Any] = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    return root


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]


def _sqlite_index_named(connection: Connection, table: str, name: str) -> str:
    """The name SQLite's plans give the index: a UNIQUE constraint's is an autoindex."""
    index_list = connection.exec_driver_sql(f"PRAGMA index_list('{table}')").all()
    if any(row[1] == name for row in index_list):
        return name
    wanted = _indexes(connection, table).get(name)
    assert wanted is not None, f"no index {name} on {table}"
    for row in index_list:
        info = connection.exec_driver_sql(f"PRAGMA index_info('{row[1]}')").all()
        if [column[2] for column in info] == wanted:
            return str(row[1])
    raise AssertionError(f"no index on {table} {wanted}")


@pytest.mark.parametrize("index", SEED_INDEXES, ids=lambda i: i.seed)
async def test_the_seed_query_reads_its_index_in_order(db: Database, index: SeedIndex) -> None:
    user_id = await _seed(db)

    async with db.engine.connect() as conn:  # rolled back on close: SET LOCAL ends there
        if conn.dialect.name == "postgresql":
            nodes = _nodes(await _plan_postgres(conn, index.query, user_id))
            assert index.name in {n.get("Index Name") for n in nodes}
            assert not {"Sort", "Incremental Sort"} & {n["Node Type"] for n in nodes}
        else:
            name = await conn.run_sync(_sqlite_index_named, index.table, index.name)
            explain = text(f"EXPLAIN QUERY PLAN {index.query}")
            if ":user_id" in index.query:
                explain = explain.bindparams(bindparam("user_id", type_=Uuid))
            details = [str(row[3]) for row in await conn.execute(explain, {"user_id": user_id})]
            assert any(f"INDEX {name} (" in detail for detail in details), details
            assert not any("TEMP B-TREE" in detail for detail in details), details
