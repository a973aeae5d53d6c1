"""Market orders per second through HTTP on PostgreSQL, next to the floor.

Run: .venv/bin/python benchmarks/orders_http.py [--orders 3000] [--clients 32] [--repeat 3]

Two servers, one after the other, each a single uvicorn process on a fresh
PostgreSQL database (127.0.0.1:5432, user postgres):
- the floor: a bare FastAPI endpoint that does one INSERT per request;
- Cival: POST /api/v1/trading/paper/order, a small market buy each, with the simulated
  market ticking (so the book refills), SQLite-free, Redis off, LOG_LEVEL=WARNING and
  the rate limit lifted for both.
The same client (httpx, `--clients` concurrent connections) drives both and reports
requests per second and p50/p99 latency. The pair runs `--repeat` times, alternated,
because the floor swings with the machine's load; the median ratio is the figure.
Goal: Cival at least a third of the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

FLOOR_APP = """
import os, uuid
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(os.environ["FLOOR_DATABASE_URL"], pool_size=10, max_overflow=20)
app = FastAPI()

class Body(BaseModel):
    symbol: str
    side: str
    quantity: str

@app.post("/order", status_code=201)
async def order(body: Body) -> dict[str, str]:
    order_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO floor_orders (id, symbol, side, quantity) VALUES (:i, :s, :d, :q)"),
            {"i": order_id, "s": body.symbol, "d": body.side, "q": body.quantity},
        )
    return {"id": str(order_id)}
"""


def spawn(args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server (a fixed command of this script's, not user input)."""
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=out)  # noqa: S603


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def create_database(name: str) -> str:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def wait_ready(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {within}s")


async def drive(url: str, body: dict[str, str], orders: int, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(orders):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": orders / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "ok": statuses.get(201, 0),
        "other": sum(v for k, v in statuses.items() if k != 201),
    }


async def run_floor(orders: int, clients: int, warmup: int) -> dict[str, float]:
    name = f"bench_floor_{uuid.uuid4().hex[:8]}"
    url = await create_database(name)
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}")
    await conn.execute(
        "CREATE TABLE floor_orders (id uuid PRIMARY KEY, symbol text, side text, quantity numeric)"
    )
    await conn.close()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        app_file = Path(tmp) / "floor_app.py"
        app_file.write_text(FLOOR_APP)
        env = {**os.environ, "FLOOR_DATABASE_URL": url}
        process = spawn(
            [sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(port),
             "--log-level", "warning", "--no-access-log"],
            cwd=Path(tmp), env=env, log=Path(tmp) / "floor.log",
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(f"{base}/docs", process)
            body = {"symbol": "BTC/USD", "side": "buy", "quantity": "0.001"}
            await drive(f"{base}/order", body, warmup, clients)
            return await drive(f"{base}/order", body, orders, clients)
        finally:
            process.terminate()
            process.wait(timeout=30)
            await drop_database(name)


async def run_cival(orders: int, clients: int, warmup: int) -> dict[str, float]:
    name = f"bench_cival_{uuid.uuid4().hex[:8]}"
    url = await create_database(name)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "DATABASE_URL": url.replace("+asyncpg", ""),
            "REDIS_URL": "",
            "DATA_DIR": tmp,
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_DEFAULT": "100000000/minute",
            "PAPER_INITIAL_BALANCE": "1000000000",
        }
        process = spawn(
            [sys.executable, "main_consolidated.py"], cwd=ROOT, env=env, log=Path(tmp) / "cival.log"
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(f"{base}/health", process)
            body = {"symbol": "BTC/USD", "side": "buy", "quantity": "0.001"}
            order_url = f"{base}/api/v1/trading/paper/order"
            await drive(order_url, body, warmup, clients)
            return await drive(order_url, body, orders, clients)
        except Exception:
            sys.stderr.write((Path(tmp) / "cival.log").read_text()[-3000:])
            raise
        finally:
            process.terminate()
            process.wait(timeout=30)
            await drop_database(name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--repeat", type=int, default=3, help="floor/Cival pairs, alternated; the median counts"
    )
    args = parser.parse_args()
    print(f"{args.orders} requests, {args.clients} concurrent clients, PostgreSQL")
    print(f"{'':38} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'201':>6} {'other':>6}")
    ratios = []
    for _ in range(args.repeat):
        floor = await run_floor(args.orders, args.clients, args.warmup)
        cival = await run_cival(args.orders, args.clients, args.warmup)
        for label, r in (
            ("floor: bare FastAPI + one INSERT", floor),
            ("cival: POST paper market order", cival),
        ):
            print(
                f"{label:38} {r['rps']:9.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
                f"{r['ok']:6.0f} {r['other']:6.0f}"
            )
        ratios.append(cival["rps"] / floor["rps"])
        print(f"{'cival / floor':38} {ratios[-1]:9.2f}")
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio >= 1 / 3 else "misses"
    print(
        f"cival / floor, median of {len(ratios)}: {ratio:.2f} "
        f"(range {min(ratios):.2f} to {max(ratios):.2f}; {verdict} the goal of at least 0.33)"
    )


if __name__ == "__main__":
    asyncio.run(main())
