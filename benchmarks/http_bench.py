"""The parts of benchmarks/orders_http.py: servers, the wrk runner, a PostgreSQL wire
proxy that records statements, and a reader of py-spy's raw stacks.

Not a benchmark of its own; see benchmarks/orders_http.py for what is measured and how.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_post.lua"
PG_HOST, PG_PORT = "127.0.0.1", 5432
ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
BACKSTOP_SECONDS = 5  # wrk's own -d, past the script's deadline: never reached normally

# A static HTTP/1.1 responder: reads each request (headers, then Content-Length bytes)
# and answers a fixed 201. What wrk can do here, with nearly nothing on the other side.
STATIC_APP = r"""
import asyncio, sys
import uvloop

REPLY = (b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
         b"content-length: 11\r\n\r\n{\"ok\":true}")

class Static(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        buffer, replies = self.buffer + data, 0
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head, length = buffer[:end].lower(), 0
            if (at := head.find(b"content-length:")) >= 0:
                length = int(head[at + 15:].split(b"\r\n", 1)[0])
            if len(buffer) < end + 4 + length:
                break
            buffer, replies = buffer[end + 4 + length:], replies + 1
        self.buffer = buffer
        if replies:
            self.transport.write(REPLY * replies)

async def main(port):
    server = await asyncio.get_running_loop().create_server(Static, "127.0.0.1", port)
    await server.serve_forever()

uvloop.run(main(int(sys.argv[1])))
"""

# The floor: what any FastAPI service on this database pays for one write per request.
# Served as Cival serves itself (main_consolidated.main): uvicorn.run on the app, no log
# config, no access log, uvloop and httptools (uvicorn's "auto"), a pool of 10 + 20.
FLOOR_APP = r"""
import logging, os, sys, uuid
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

logging.basicConfig(level=logging.WARNING)
engine = create_async_engine(os.environ["FLOOR_DATABASE_URL"], pool_size=10, max_overflow=20)
app = FastAPI()

class Body(BaseModel):
    symbol: str
    side: str
    quantity: str
    account_id: uuid.UUID | None = None

@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}

@app.post("/order", status_code=201)
async def order(body: Body) -> dict[str, str]:
    order_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO floor_orders (id, account_id, symbol, side, quantity) "
                 "VALUES (:i, :a, :s, :d, :q)"),
            {"i": order_id, "a": body.account_id, "s": body.symbol, "d": body.side,
             "q": body.quantity},
        )
    return {"id": str(order_id)}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None,
            access_log=False, lifespan="on")
"""

# Every variable Cival's settings read, by prefix or by name (as tests/e2e/server.py):
# removed from the server's environment, then the benchmark's own set.
_SETTING_PREFIXES = (
    "DATABASE_", "REDIS_", "PAPER_", "AGENT_", "WS_", "OPENAI_", "ANTHROPIC_",
    "OPENROUTER_", "LLM_", "MARKET_DATA_", "SIMULATION_", "ALPHA_VANTAGE_",
)  # fmt: skip
_SETTING_NAMES = frozenset(
    {
        "ENVIRONMENT", "DATA_DIR", "HOST", "PORT", "LOG_LEVEL", "LOG_FORMAT", "API_PREFIX",
        "CORS_ORIGINS", "AUTH_ENABLED", "SECRET_KEY", "RATE_LIMIT_DEFAULT", "RUN_MIGRATIONS",
        "LOAD_SEED_DATA", "SOLO_USER_EMAIL",
    }
)  # fmt: skip


# -- processes, ports, databases ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in _SETTING_NAMES and not key.upper().startswith(_SETTING_PREFIXES)
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    process: asyncio.subprocess.Process
    base: str
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def serve(
    args: list[str], *, cwd: Path, env: dict[str, str], port: int, ready_path: str
) -> AsyncIterator[Server]:
    """Start a server (a fixed command of this script's), wait until `ready_path`
    answers below 500, and stop it (SIGTERM, then SIGKILL) when the block ends."""
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"{args[1]} exited with {process.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(server.base + ready_path)).status_code < 500:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.base}{ready_path} not ready within 60 s")
                await asyncio.sleep(0.1)
        yield server
    except BaseException:
        sys.stderr.write(f"--- {args[1]} log, last lines ---\n{server.log_tail()}\n")
        raise
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """A new, empty database on the server, dropped afterwards; yields its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dsn(name: str, port: int = PG_PORT) -> str:
    return f"postgresql://postgres@{PG_HOST}:{port}/{name}"


@contextlib.asynccontextmanager
async def static_server(tmp: Path) -> AsyncIterator[Server]:
    port = free_port()
    script = tmp / "static_app.py"
    script.write_text(STATIC_APP)
    args = [sys.executable, str(script), str(port)]
    async with serve(args, cwd=tmp, env=dict(os.environ), port=port, ready_path="/") as s:
        yield s


@contextlib.asynccontextmanager
async def floor_server(tmp: Path, database: str) -> AsyncIterator[Server]:
    conn = await asyncpg.connect(dsn(database))
    try:
        await conn.execute(
            "CREATE TABLE floor_orders (id uuid PRIMARY KEY, account_id uuid, symbol text, "
            "side text, quantity numeric)"
        )
    finally:
        await conn.close()
    port = free_port()
    script = tmp / "floor_app.py"
    script.write_text(FLOOR_APP)
    env = {**os.environ, "FLOOR_DATABASE_URL": dsn(database).replace("://", "+asyncpg://", 1)}
    args = [sys.executable, str(script), str(port)]
    async with serve(args, cwd=tmp, env=env, port=port, ready_path="/ping") as s:
        yield s


@contextlib.asynccontextmanager
async def cival_server(
    app_dir: Path, database: str, *, db_port: int = PG_PORT
) -> AsyncIterator[Server]:
    """Cival as the Dockerfile runs it (`python main_consolidated.py` in its data dir),
    on PostgreSQL, Redis off, WARNING logs, the rate limit lifted, the market ticking."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cival-bench-") as data:
        env = clean_environment() | {
            "DATABASE_URL": dsn(database, db_port),
            "REDIS_URL": "",
            "DATA_DIR": data,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "RATE_LIMIT_DEFAULT": "1000000000/minute",
            "PAPER_INITIAL_BALANCE": "1000000000",
            "MARKET_DATA_STREAM": "true",
            "SIMULATION_TICK_SECONDS": "1",
        }
        args = [sys.executable, str(app_dir / "main_consolidated.py")]
        async with serve(args, cwd=Path(data), env=env, port=port, ready_path="/health") as s:
            yield s


# -- wrk -------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run, as benchmarks/wrk_post.lua counted it."""

    seconds: float
    sent: int
    answered: int
    ok: int
    statuses: dict[str, int]
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    ok_per_thread: list[int]

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    @property
    def failures(self) -> int:
        """Non-2xx answers, socket errors, and requests left unanswered."""
        socket_errors = sum(v for k, v in self.errors.items() if k != "status")
        return (self.answered - self.ok) + socket_errors + (self.sent - self.answered)


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        sys.exit("orders_http: wrk not found; install it (Debian: apt-get install -y wrk)")
    return found


def _stopped_threads(folder: str) -> int:
    return sum(1 for name in os.listdir(folder) if name.startswith("out.json.stopped."))


async def run_wrk(
    url: str, *, seconds: float, connections: int, bodies: list[str] | None, method: str = "POST"
) -> Run:
    """wrk with one connection per thread; thread i sends bodies[i % len(bodies)]."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        out = Path(tmp) / "out.json"
        env = {**os.environ, "WRK_METHOD": method, "WRK_SECONDS": str(seconds)}
        env["WRK_OUT"] = str(out)
        if bodies:
            body_file = Path(tmp) / "bodies.txt"
            body_file.write_text("".join(f"{b}\n" for b in bodies))
            env["WRK_BODIES"] = str(body_file)
        process = await asyncio.create_subprocess_exec(
            wrk_binary(),
            "-t", str(connections), "-c", str(connections),
            "-d", f"{math.ceil(seconds) + BACKSTOP_SECONDS}s", "--timeout", "30s",
            "-s", str(WRK_SCRIPT), url,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        # Every thread stops on its own at the deadline (benchmarks/wrk_post.lua) and says
        # so with a file; then SIGINT ends wrk's sleep through -d, and `done` reports.
        communicate = asyncio.ensure_future(process.communicate())
        while not communicate.done():
            if _stopped_threads(tmp) >= connections:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
                break
            await asyncio.wait([communicate], timeout=0.05)
        output, _ = await communicate
        if process.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({process.returncode}): {output.decode()[-2000:]}")
        r = json.loads(out.read_text())
    return Run(
        seconds=r["seconds"],
        sent=r["sent"],
        answered=r["answered"],
        ok=r["ok"],
        statuses=r["statuses"],
        errors=r["errors"],
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        ok_per_thread=[t["ok"] for t in r["threads"]],
    )


# -- a PostgreSQL wire proxy that records statements -------------------------------------


@dataclass
class WireEvent:
    connection: int
    kind: str  # "query" (simple), "execute" (a Bind), "parse", "sync"; "order" (a mark)
    text: str


class PgTrace:
    """A PostgreSQL wire-protocol proxy that records what clients send: simple queries,
    prepared statements (Parse) and their executions (Bind, by statement name), and each
    Sync (one round trip of the extended protocol). It refuses TLS (answers 'N'), so the
    client falls back to plain text on this loopback hop."""

    def __init__(self) -> None:
        self.events: list[WireEvent] = []
        self.recording = False
        self._connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def mark(self, text: str) -> None:
        self.events.append(WireEvent(0, "order", text))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        connection = self._connections
        statements: dict[str, str] = {}
        try:
            while True:  # startup: SSLRequest / GSSENCRequest get an 'N', then StartupMessage
                length = struct.unpack("!I", await reader.readexactly(4))[0]
                packet = await reader.readexactly(length - 4)
                if struct.unpack("!I", packet[:4])[0] not in (80877103, 80877104):
                    break
                writer.write(b"N")
                await writer.drain()
            up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
            up_writer.write(struct.pack("!I", length) + packet)

            async def downstream() -> None:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                writer.close()

            down = asyncio.create_task(downstream())
            try:
                while True:
                    head = await reader.readexactly(5)
                    kind, size = head[:1], struct.unpack("!I", head[1:])[0]
                    body = await reader.readexactly(size - 4)
                    self._record(connection, kind, body, statements)
                    up_writer.write(head + body)
                    await up_writer.drain()
                    if kind == b"X":
                        break
            finally:
                up_writer.close()
                down.cancel()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # either side hung up: the connection is over, nothing to record
        finally:
            writer.close()

    def _record(
        self, connection: int, kind: bytes, body: bytes, statements: dict[str, str]
    ) -> None:
        parts = [p.decode(errors="replace") for p in body.split(b"\0", 2)]
        if kind == b"P":  # Parse: name, query, ...
            statements[parts[0]] = parts[1]
            event = WireEvent(connection, "parse", parts[1])
        elif kind == b"B":  # Bind: portal, statement name, ...
            event = WireEvent(connection, "execute", statements.get(parts[1], parts[1]))
        elif kind == b"Q":  # simple Query
            event = WireEvent(connection, "query", parts[0])
        elif kind == b"S":  # Sync: the client now waits for the server
            event = WireEvent(connection, "sync", "")
        else:
            return
        if self.recording:
            self.events.append(event)


# -- py-spy's raw stacks -----------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    function: str
    path: str


Stack = list[Frame]


def read_stacks(raw: Path) -> list[tuple[Stack, int]]:
    """py-spy's raw output (`--threads`: the thread first, then outermost to innermost
    frame, then the count), main thread only: the event loop, and the greenlets in
    which SQLAlchemy's ORM runs (their stacks start at the ORM call: py-spy does not see
    the await that spawned them)."""
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        thread, *frames = stack.split(";")
        if "MainThread" not in thread:
            continue
        parsed = []
        for frame in frames:
            function, _, where = frame.partition(" (")
            parsed.append(Frame(function, where.removesuffix(")")))
        stacks.append((parsed, int(count)))
    return stacks


def library(frame: Frame, app_dir: Path) -> str:
    """The library, or the Cival package, a frame's file is in."""
    path = frame.path
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    app = f"{app_dir}/"
    if path.startswith(app):
        rest = path[len(app) :]
        return "cival " + (rest.split("/", 1)[0] if "/" in rest else rest)
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)[1]
        return "stdlib " + rest.split("/", 1)[0].removesuffix(".py")
    return path or frame.function


def _has(frames: Stack, *, function: str = "", path: str = "") -> bool:
    return any(
        (not function or f.function == function or f.function.endswith("." + function))
        and path in f.path
        for f in frames
    )


def _in_greenlet(frames: Stack) -> bool:
    """A stack of SQLAlchemy's sync ORM code inside its greenlet (not rooted at the
    program's <module>)."""
    return bool(frames) and frames[0].function != "<module>"


def _any_path(*parts: str) -> Callable[[Stack], bool]:
    return lambda f: any(_has(f, path=p) for p in parts)


def _leaf_in(*parts: str) -> Callable[[Stack], bool]:
    return lambda f: bool(f) and any(p in f[-1].path for p in parts)


# Each sample goes to the first bucket whose test its stack passes (so they add to 100%).
BUCKETS: list[tuple[str, Callable[[Stack], bool]]] = [
    ("background: market ticks (simulated market, tick fills, flushes)",
     _any_path("services/market_data/", "connectors/simulated/", "paper_trading/fills.py")),
    ("rate limiter (slowapi + limits, lifted but checked)", _any_path("/slowapi/", "/limits/")),
    ("logging (structlog + logging: access log filtered at WARNING)",
     _any_path("/structlog/", "/logging/")),
    ("ORM unit of work: (auto)flush of order, trade, position, account",
     lambda f: _in_greenlet(f) and (_has(f, function="Session.flush")
                                    or _has(f, function="Session._autoflush"))),
    ("ORM statements: Session.execute (SELECT ... FOR UPDATE, bulk UPDATE; rows to objects)",
     lambda f: _in_greenlet(f) and f[0].function == "Session.execute"),
    ("ORM transaction: begin, commit, close, pool checkout + pre-ping", _in_greenlet),
    ("asyncpg: bind, execute, read rows, BEGIN/COMMIT (every round trip)",
     _any_path("/asyncpg/")),
    ("SQLAlchemy asyncio bridge + statement building (AsyncSession, select(), update())",
     _any_path("/sqlalchemy/")),
    ("pydantic: OrderCreate in, OrderRead from ORM rows, model_dump, response",
     _any_path("/pydantic")),
    ("JSON: body json.loads(parse_float=Decimal), jsonable_encoder, render",
     lambda f: _has(f, function="loads", path="/json/") or _has(f, function="dumps")
     or _has(f, path="fastapi/encoders.py") or _has(f, function="JSONResponse.render")),
    ("order logic: place_order, matching, ledger, ORM objects built (Cival code)",
     _any_path("/services/", "/database/", "/models/", "/connectors/")),
    # What is left ran in the request plumbing itself: by the innermost frame.
    ("middleware: RequestContextMiddleware, CORS, Starlette's stack and routing",
     _leaf_in("core/middleware.py", "/starlette/")),
    ("uvicorn: httptools parsing, protocol, ASGI cycle", _leaf_in("/uvicorn/")),
    ("event loop: asyncio/uvloop scheduling, sockets (no deeper Python frame)",
     lambda f: not f or f[-1].function == "Runner.run" or _leaf_in("/asyncio/")(f)),
    ("FastAPI: routing, solve_dependencies, exit stacks (and stdlib they call)",
     _any_path("/fastapi/")),
    ("other", lambda _f: True),
]  # fmt: skip


def print_profile(raw: Path, app_dir: Path, cpu_s: float, orders: int) -> None:
    stacks = read_stacks(raw)
    total = sum(n for _, n in stacks)
    if not total:
        print("  py-spy recorded no samples of the main thread")
        return
    per_order = 1000 * cpu_s / orders if orders else 0.0
    print(
        f"  {total} samples holding the GIL on the main thread; the process used {cpu_s:.2f} "
        f"s of CPU for {orders} orders: {per_order:.2f} ms CPU an order, split by the samples"
    )

    def table(title: str, counts: Counter[str], labels: list[str]) -> None:
        print(f"  {title}")
        for label in labels:
            n = counts[label]
            print(f"    {100 * n / total:5.1f}%  {n * per_order / total:5.2f} ms  {label}")

    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for frames, n in stacks:
        buckets[next(label for label, test in BUCKETS if test(frames))] += n
        leaf = library(frames[-1], app_dir) if frames else "(no Python frame)"
        own[leaf] += n
        functions[f"{frames[-1].function if frames else '-'} ({leaf})"] += n
    table(
        "by concern (each sample once, its first matching line):", buckets, [b for b, _ in BUCKETS]
    )
    table(
        "self time by library (innermost Python frame; C code counts to its caller):",
        own,
        [name for name, _ in own.most_common(10)],
    )
    table("hottest functions (self time):", functions, [n for n, _ in functions.most_common(12)])
