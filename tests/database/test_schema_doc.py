"""docs/schema.md accounts for every seed table and column, names only tables, columns
and indexes that exist, and states totals that are the counts of its own tables."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Index, UniqueConstraint

from database.orm import Base

SCHEMA_DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"

# Every column of every CREATE TABLE in the two seed documents, in their order.
SEED_000_COLUMNS = {
    "agents": "id name type status personality strategies paper_balance total_pnl win_rate "
    "trades_count risk_tolerance max_position_size llm_provider llm_model created_at updated_at",
    "agent_decisions": "id agent_id decision_type symbol reasoning confidence_score market_data "
    "action_taken result execution_time_ms created_at",
    "agent_paper_accounts": "id agent_id account_name initial_balance current_balance total_pnl "
    "realized_pnl unrealized_pnl total_trades winning_trades losing_trades max_drawdown "
    "sharpe_ratio created_at updated_at",
    "agent_paper_trades": "id agent_id account_id symbol side order_type quantity price "
    "executed_price executed_quantity executed_at status strategy reasoning pnl commission "
    "created_at",
    "agent_portfolios": "id agent_id account_id symbol quantity avg_price current_price "
    "market_value unrealized_pnl realized_pnl last_trade_at created_at updated_at",
}
SEED_001_COLUMNS = {
    "users": "id email password_hash full_name role is_active created_at updated_at",
    "user_sessions": "id user_id token_hash expires_at created_at",
    "user_api_keys": "id user_id exchange api_key_encrypted api_secret_encrypted "
    "passphrase_encrypted is_active created_at",
    "trading_accounts": "id user_id exchange account_id account_type is_active created_at",
    "trading_pairs": "id symbol base_asset quote_asset exchange min_order_size max_order_size "
    "tick_size step_size is_active created_at",
    "orders": "id user_id account_id external_order_id symbol side type quantity price stop_price "
    "time_in_force status filled_quantity average_price fees exchange created_at updated_at",
    "trades": "id order_id user_id external_trade_id symbol side quantity price fees exchange "
    "executed_at created_at",
    "positions": "id user_id account_id symbol size average_price market_value unrealized_pnl "
    "exchange updated_at",
    "balances": "id user_id account_id asset free locked total usd_value exchange updated_at",
    "portfolio_snapshots": "id user_id total_value total_pnl daily_pnl positions_count "
    "snapshot_date created_at",
    "trading_strategies": "id user_id name description strategy_type parameters is_active "
    "performance_metrics created_at updated_at",
    "trading_agents": "id user_id name agent_type configuration status performance "
    "last_decision_at created_at updated_at",
    "trading_signals": "id strategy_id agent_id symbol action strength price confidence "
    "reasoning metadata created_at",
    "market_data_ohlcv": "id symbol exchange timeframe open_time close_time open_price "
    "high_price low_price close_price volume quote_volume trades_count created_at",
    "price_tickers": "id symbol exchange price bid_price ask_price volume_24h change_24h "
    "updated_at",
    "order_book_snapshots": "id symbol exchange bids asks timestamp created_at",
    "risk_metrics": "id user_id portfolio_risk value_at_risk max_drawdown sharpe_ratio "
    "position_risks calculated_at created_at",
    "risk_alerts": "id user_id alert_type severity message data acknowledged created_at",
    "trading_limits": "id user_id limit_type symbol limit_value current_value is_active "
    "created_at updated_at",
    "system_logs": "id level module message data user_id created_at",
    "api_rate_limits": "id user_id endpoint requests_count window_start "
    "window_duration_seconds limit_exceeded created_at",
    "exchange_status": "id exchange status last_ping response_time_ms error_message updated_at",
}
SEED_COLUMNS = {
    **{(t, "000"): c.split() for t, c in SEED_000_COLUMNS.items()},
    **{(t, "001"): c.split() for t, c in SEED_001_COLUMNS.items()},
}
# Tables of the earlier Supabase migration beyond seed 000's five; no text to check.
EARLIER_TABLES = {
    "agent_files",
    "market_data",
    "trading_strategies",
    "system_metrics",
    "app_logs",
    "realtime_events",
    "master_wallet",
    "wallet_balances",
}
NOT_BUILT = {
    "user_sessions",
    "api_rate_limits",
    "exchange_status",
}
STATUSES = {"mapped", "derived", "dropped", "missing"}


def _doc() -> str:
    return SCHEMA_DOC.read_text(encoding="utf-8")


def _section(heading: str) -> str:
    return _doc().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def _names(cell: str) -> set[str]:
    return set(re.findall(r"`([a-z_0-9]+)`", cell))


def _columns(cell: str) -> list[tuple[str, str]]:
    return re.findall(r"`([a-z_0-9]+)\.([a-z_0-9]+)`", cell)


def _column_rows() -> dict[tuple[str, str], list[list[str]]]:
    """(seed table, source) → its rows: seed column, now, status, why."""
    tables = {}
    for block in _section("Column mapping").split("\n### ")[1:]:
        heading = re.fullmatch(r"`([a-z_0-9]+)` \((\d{3})\)", block.splitlines()[0])
        assert heading, block.splitlines()[0]
        tables[heading[1], heading[2]] = _rows(block)
    return tables


def _exists(table: str, column: str) -> bool:
    return table in Base.metadata.tables and column in Base.metadata.tables[table].c


class TestSeedTableMapping:
    def test_every_seed_table_is_listed_with_its_source(self) -> None:
        rows = _rows(_section("Seed table mapping"))
        listed = {(row[0].strip("`"), s.strip()) for row in rows for s in row[1].split(",")}

        expected = set(SEED_COLUMNS) | {(t, "earlier") for t in EARLIER_TABLES}
        assert listed == expected

    def test_built_tables_map_to_existing_tables(self) -> None:
        for row in _rows(_section("Seed table mapping")):
            if row[0].strip("`") in NOT_BUILT:
                continue
            assert _names(row[2]), row
            assert _names(row[2]) <= set(Base.metadata.tables), row

    def test_the_missing_tables_say_so_and_do_not_exist(self) -> None:
        rows = {row[0].strip("`"): row for row in _rows(_section("Seed table mapping"))}
        for table in NOT_BUILT:
            assert rows[table][2] == "not yet built"
            assert rows[table][3].startswith("missing: added by the ")
            assert table not in Base.metadata.tables

    def test_every_table_is_a_seed_target_or_documented_as_new(self) -> None:
        targets = set().union(*(_names(row[2]) for row in _rows(_section("Seed table mapping"))))
        new = {row[0].strip("`") for row in _rows(_section("Tables new in this schema"))}

        assert targets | new == set(Base.metadata.tables)
        assert not targets & new


class TestColumnMapping:
    def test_every_seed_column_is_listed_once_in_seed_order(self) -> None:
        tables = _column_rows()
        assert set(tables) == set(SEED_COLUMNS)
        for key, rows in tables.items():
            assert [row[0].strip("`") for row in rows] == SEED_COLUMNS[key], key

    def test_every_named_column_exists(self) -> None:
        rows = [row for rows in _column_rows().values() for row in rows]
        named = {ref for row in rows for ref in _columns(row[1])}
        assert named
        assert {ref for ref in named if not _exists(*ref)} == set()

    @pytest.mark.parametrize("status", sorted(STATUSES))
    def test_a_row_names_columns_exactly_when_the_value_is_kept_or_computed(
        self, status: str
    ) -> None:
        rows = [row for rows in _column_rows().values() for row in rows if row[2] == status]
        assert rows
        for row in rows:
            if status in {"mapped", "derived"}:
                assert _columns(row[1]), row
            else:
                assert row[1] == "—", row
                assert row[3], row  # the reason, or the work that adds it

    def test_statuses_are_the_documented_ones(self) -> None:
        statuses = {row[2] for rows in _column_rows().values() for row in rows}
        assert statuses == STATUSES

    def test_every_column_of_a_missing_table_is_missing(self) -> None:
        for (table, _source), rows in _column_rows().items():
            if table in NOT_BUILT:
                assert {row[2] for row in rows} == {"missing"}, table

    def test_the_stated_totals_are_the_counts(self) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        for (_table, source), rows in _column_rows().items():
            counts["tables", source] += 1
            for row in rows:
                counts["columns", source] += 1
                counts[row[2], source] += 1
                kept = _columns(row[1])
                if row[2] == "mapped" and kept[0][1] != row[0].strip("`"):
                    counts["renamed", source] += 1
        labels = {
            "Seed tables": "tables",
            "Seed columns": "columns",
            "Mapped": "mapped",
            "… of which under another column name": "renamed",
            "Derived": "derived",
            "Dropped": "dropped",
            "Missing": "missing",
        }
        totals = _doc().split("| | Seed 000 | Seed 001 | Both |\n", 1)[1].split("\n\n", 1)[0]
        stated = {}
        for line in totals.splitlines()[1:]:
            label, *numbers = (cell.strip() for cell in line.strip("|").split("|"))
            stated[labels[label.split(":")[0]]] = [int(n) for n in numbers]

        assert set(stated) == set(labels.values())
        for kind, (seed_000, seed_001, both) in stated.items():
            assert (seed_000, seed_001) == (counts[kind, "000"], counts[kind, "001"]), kind
            assert both == seed_000 + seed_001, kind


class TestIndexDoc:
    def test_every_index_named_in_the_index_table_exists(self) -> None:
        names = {
            str(item.name)
            for table in Base.metadata.tables.values()
            for item in (*table.indexes, *table.constraints)
            if isinstance(item, Index | UniqueConstraint)
        }
        rows = _rows(_section("Indexes"))
        assert len(rows) == 7
        for row in rows:
            ours = _names(row[2])
            assert ours <= names, row
            assert bool(ours) != row[3].startswith("deferred"), row
