"""Money stays exact and UTCDateTime stays aware UTC, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import StatementError

from database.connection import Database
from database.orm import AccountBalance
from database.orm.types import Money, UTCDateTime, to_storage_scale
from tests.factories import create_account

_probe_metadata = MetaData()
probe = Table(
    "type_probe",
    _probe_metadata,
    Column("id", Integer, primary_key=True),
    Column("amount", Money),
    Column("at", UTCDateTime),
)


@pytest.fixture
async def probe_db(db: Database) -> Database:
    async with db.engine.begin() as conn:
        await conn.run_sync(_probe_metadata.create_all)
    return db


async def _round_trip(db: Database, column: str, value: Any) -> Any:
    async with db.transaction() as session:
        await session.execute(insert(probe).values({"id": 1, column: value}))
    async with db.read() as session:
        return await session.scalar(select(probe.c[column]).where(probe.c.id == 1))


class TestMoney:
    @pytest.mark.parametrize(
        ("value", "plain"),
        [
            ("0.1", "0.1"),
            ("123456789.123456789012345678", "123456789.123456789012345678"),
            ("1E-18", "0.000000000000000001"),
            ("0", "0"),
            ("100", "100"),
            ("-42.50", "-42.5"),
            ("99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"),
            (
                "-99999999999999999999.999999999999999999",
                "-99999999999999999999.999999999999999999",
            ),
        ],
    )
    async def test_round_trips_exactly(self, probe_db: Database, value: str, plain: str) -> None:
        stored = await _round_trip(probe_db, "amount", Decimal(value))

        assert isinstance(stored, Decimal)
        assert stored == Decimal(value)
        # Trailing zeros of the storage scale are dropped, and 100 is not 1E+2.
        assert format(stored, "f") == plain
        assert str(stored) == str(Decimal(plain))

    async def test_accepts_strings_and_ints(self, probe_db: Database) -> None:
        assert await _round_trip(probe_db, "amount", "0.30") == Decimal("0.3")

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("0.0000000000000000005", "0.000000000000000001"),
            ("-0.0000000000000000005", "-0.000000000000000001"),
            ("0.0000000000000000004999", "0"),
            ("2.0000000000000000015", "2.000000000000000002"),
        ],
    )
    async def test_rounds_past_18_decimals_half_away_from_zero(
        self, probe_db: Database, value: str, expected: str
    ) -> None:
        assert await _round_trip(probe_db, "amount", Decimal(value)) == Decimal(expected)

    @pytest.mark.postgres
    @pytest.mark.parametrize(
        "value",
        ["0.0000000000000000005", "-0.0000000000000000005", "2.0000000000000000025", "7.5E-19"],
    )
    async def test_rounds_as_postgres_numeric_does(
        self, fresh_postgres_url: str, value: str
    ) -> None:
        # SQLite stores what to_storage_scale returns; PostgreSQL rounds on its own.
        db = Database(fresh_postgres_url)
        try:
            async with db.engine.connect() as conn:
                server = await conn.scalar(
                    text("SELECT CAST(:value AS NUMERIC(38, 18))"), {"value": Decimal(value)}
                )
        finally:
            await db.dispose()

        assert to_storage_scale(Decimal(value)) == server

    async def test_refuses_float(self, probe_db: Database) -> None:
        with pytest.raises(StatementError, match="float never enters the ledger"):
            await _round_trip(probe_db, "amount", 0.1)

    @pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
    async def test_refuses_non_finite(self, probe_db: Database, value: str) -> None:
        with pytest.raises(StatementError, match="not a finite amount"):
            await _round_trip(probe_db, "amount", Decimal(value))

    @pytest.mark.parametrize(
        "value", ["1E+20", "-100000000000000000000", "99999999999999999999.9999999999999999995"]
    )
    async def test_refuses_amounts_of_ten_to_the_twenty_or_more(
        self, probe_db: Database, value: str
    ) -> None:
        with pytest.raises(StatementError, match="out of range"):
            await _round_trip(probe_db, "amount", Decimal(value))

    async def test_round_trips_through_a_migrated_table(self, db: Database) -> None:
        # The migration freezes its own copy of the type; it must store the same thing.
        account = await create_account(db, cash="123456789.123456789012345678")
        async with db.read() as session:
            balance = await session.scalar(
                select(AccountBalance).where(AccountBalance.account_id == account.id)
            )
        assert balance is not None
        assert balance.free == Decimal("123456789.123456789012345678")
        assert balance.locked == 0


class TestUTCDateTime:
    async def test_returns_aware_utc(self, probe_db: Database) -> None:
        paris_summer = timezone(timedelta(hours=2))
        moment = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris_summer)

        stored = await _round_trip(probe_db, "at", moment)

        assert stored.tzinfo is UTC
        assert stored == moment
        assert stored.replace(tzinfo=None) == datetime(2025, 6, 1, 12, 30, 15, 123456)

    async def test_refuses_naive(self, probe_db: Database) -> None:
        with pytest.raises(StatementError, match="naive datetime"):
            await _round_trip(probe_db, "at", datetime(2025, 6, 1, 12, 0))
