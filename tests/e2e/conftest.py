"""The end-to-end tier: the real server in a subprocess, driven only through its public
surfaces (HTTP, WebSocket) by real clients.

`server` is one server per module and backend: SQLite with the in-process bus started
by the README's command, and PostgreSQL + Redis started by the seed's Dockerfile
command (`uvicorn main_consolidated:app`), each on a fresh data dir, a fresh database
that the server migrates itself, and its own Redis namespace. Tests in a module share
it, so each one looks only for what its own actions caused (its order id, its agent).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from models.ws_protocol import parse_server_message
from tests.conftest import REDIS_URL, pg_admin, pg_url
from tests.e2e.server import LiveServer, running

WAIT = 15.0

BACKENDS = {
    "sqlite": "script",  # README: python main_consolidated.py
    "postgres": "uvicorn",  # seed Dockerfile: uvicorn main_consolidated:app
}


@dataclass
class Backend:
    name: str
    how: str
    env: dict[str, str] = field(default_factory=dict)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module", params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """SQLite and no Redis, or a fresh empty PostgreSQL database plus Redis."""
    if request.param == "sqlite":
        yield Backend("sqlite", BACKENDS["sqlite"])
        return
    request.getfixturevalue("postgres_available")
    request.getfixturevalue("redis_available")
    name = f"cival_e2e_{uuid.uuid4().hex[:12]}"
    _run(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield Backend(
            "postgres",
            BACKENDS["postgres"],
            {
                "DATABASE_URL": pg_url(name),
                "REDIS_URL": REDIS_URL,
                "REDIS_NAMESPACE": f"e2e-{uuid.uuid4().hex[:10]}",
            },
        )
    finally:
        _run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def module_env() -> dict[str, str]:
    """Extra settings a module's server runs with (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def server(
    backend: Backend, module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp(f"cival-{backend.name}")
    with running(data_dir, how=backend.how, **(backend.env | module_env)) as live:
        yield live
    live.assert_clean_log()


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
        yield client


class Subscriber:
    """A WebSocket client of /ws: send messages, wait for the frames a test expects.

    Every frame received is validated with the protocol's models (the ones
    /asyncapi.json is built from), so what the server sends cannot drift from the doc.

    Frames that arrive while a test waits for another one are kept, in order, for a
    later `until`: events of one action on several channels come in no fixed order.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())

    async def recv(self) -> dict[str, Any]:
        """The next frame; it must validate against the published protocol (AsyncAPI)."""
        raw = await asyncio.wait_for(self.ws.recv(), WAIT)
        parse_server_message(raw)
        frame: dict[str, Any] = orjson.loads(raw)
        return frame

    async def subscribe(self, channel: str, **extra: Any) -> None:
        await self.send({"type": "subscribe", "channel": channel, **extra})
        ack = await self.until(lambda f: f.get("type") in ("subscribed", "error"))
        assert ack == {"type": "subscribed", "channel": channel}, ack

    async def until(
        self, match: Callable[[dict[str, Any]], bool], within: float = WAIT
    ) -> dict[str, Any]:
        """The first frame that matches, kept from earlier or read within `within` s."""
        for i, frame in enumerate(self.pending):
            if match(frame):
                return self.pending.pop(i)
        async with asyncio.timeout(within):
            while True:
                frame = await self.recv()
                if match(frame):
                    return frame
                if frame.get("type") != "ping":
                    self.pending.append(frame)

    async def collect(
        self, match: Callable[[dict[str, Any]], bool], done: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        """Every matching frame up to and including the first that is `done`."""
        found: list[dict[str, Any]] = []
        while True:
            frame = await self.until(match)
            found.append(frame)
            if done(frame):
                return found


@asynccontextmanager
async def subscriber(server: LiveServer, *channels: str) -> AsyncIterator[Subscriber]:
    async with connect(server.ws_url, ping_interval=None, open_timeout=WAIT) as ws:
        sub = Subscriber(ws)
        for channel in channels:
            await sub.subscribe(channel)
        yield sub


def event_of(kind: str, channel: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == kind and f.get("channel") == channel


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
