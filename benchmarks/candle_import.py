"""Candle CSV import: rows a second for a 1,000,000-row file, on SQLite and PostgreSQL,
with the parser alone as the baseline of the same run.

The file is generated once, in memory: one-minute candles from 2024-01-01, epoch
seconds, prices to the cent and volumes to 1e-8 (about 60 bytes a row), cut into
64 KiB chunks as a server hands them on. Three figures:

- **parse only**: `CandleCsvParser` fed the chunks, every row checked (decoding,
  fields, Decimals, bar consistency, alignment, the duplicate check): the baseline,
  the most an import could do without a database;
- **import, sqlite** and **import, postgres**: `CandleImportService.import_csv` on a
  fresh migrated database, the whole of what the route does: the parse, the spool,
  and the upsert in batches inside one transaction.

Each figure is the best of `--runs` (the same candles imported again overwrite: the
first run inserts, later ones upsert over existing rows; both times are printed).
Times are wall-clock (`time.perf_counter`).

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) unless
`--backend sqlite`; a database of its own is created and dropped.

    .venv/bin/python benchmarks/candle_import.py [--rows 1000000] [--runs 2]
        [--backend both|sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

# Run as a script: the repository root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_settings
from services.files.csv_candles import CandleCsvParser
from services.files.service import CandleImportService
from services.infra.database import DatabaseService

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHUNK = 64 * 1024
START = 1_704_067_200  # 2024-01-01T00:00:00Z


def generate(rows: int) -> list[bytes]:
    """The file, in CHUNK-sized pieces."""
    lines = ["timestamp,open,high,low,close,volume\n"]
    price = 4_200_000  # cents
    for i in range(rows):
        step = (i * 7919) % 201 - 100
        close = price + step
        high, low = max(price, close) + 25, min(price, close) - 25
        lines.append(
            f"{START + 60 * i},{price / 100:.2f},{high / 100:.2f},{low / 100:.2f},"
            f"{close / 100:.2f},{(i % 9973) / 7:.8f}\n"
        )
        price = close
    data = "".join(lines).encode()
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


async def stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def parse_only(chunks: list[bytes]) -> tuple[float, int]:
    began = time.perf_counter()
    parser = CandleCsvParser("1m")
    count = 0
    for chunk in chunks:
        count += len(parser.feed(chunk))
    count += len(parser.finish())
    if parser.error_count:
        raise SystemExit(f"generated file refused: {parser.errors[:3]}")
    return time.perf_counter() - began, count


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    name = f"cival_bench_import_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def import_runs(url: str, data_dir: Path, chunks: list[bytes], runs: int) -> list[float]:
    settings = load_settings(
        data_dir=data_dir,
        environment="test",
        log_level="WARNING",
        database={"url": url},
        redis={"url": ""},
        market_data={"market_data_import_max_bytes": 16 * 1024**3},
    )
    database = DatabaseService(settings)
    await database.start()
    try:
        imports = CandleImportService(database, settings.market_data)
        times = []
        for _ in range(runs):
            result = await imports.import_csv("BENCH/USD", timeframe="1m", body=stream(chunks))
            times.append(result.seconds)
        return times
    finally:
        await database.stop()


def line(label: str, rows: int, seconds: float, baseline: float | None = None) -> str:
    rate = rows / seconds
    share = "" if baseline is None else f"   {rate / baseline:6.1%} of parse-only"
    return f"{label:<28} {seconds:8.2f} s {rate:12,.0f} rows/s{share}"


async def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--rows", type=int, default=1_000_000)
    cli.add_argument("--runs", type=int, default=2)
    cli.add_argument("--backend", choices=("both", "sqlite", "postgres"), default="both")
    args = cli.parse_args()

    chunks = generate(args.rows)
    size = sum(len(c) for c in chunks)
    print(f"{args.rows:,} one-minute candles, {size / 1e6:.1f} MB in {len(chunks)} chunks")
    parsed = [parse_only(chunks) for _ in range(args.runs)]
    if any(count != args.rows for _, count in parsed):
        raise SystemExit("the parser lost rows")
    parse_seconds = min(s for s, _ in parsed)
    baseline = args.rows / parse_seconds
    print(line("parse only (baseline)", args.rows, parse_seconds))

    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                times = await import_runs(url, Path(tmp), chunks, args.runs)
            else:
                async with postgres_database() as url:
                    times = await import_runs(url, Path(tmp), chunks, args.runs)
        print(line(f"import, {backend} (insert)", args.rows, times[0], baseline))
        for seconds in times[1:]:
            print(line(f"import, {backend} (overwrite)", args.rows, seconds, baseline))


if __name__ == "__main__":
    asyncio.run(main())
