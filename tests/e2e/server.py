"""The real Cival server in a subprocess, started the way users start it.

Two start commands, both served from the repository:
- `script`: `python main_consolidated.py` (the README's server and the Dockerfile's CMD);
- `uvicorn`: `uvicorn main_consolidated:app` (the seed's Dockerfile command).

Each server gets a fresh data dir (its own SQLite file, migrated and seeded by the
server itself), a free loopback port, and an environment with every Cival setting
removed and then set explicitly, so a developer's shell or `.env` never leaks in (the
process runs in the data dir, where there is no `.env`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 30.0

# Every variable core.config reads, by prefix or by name.
_SETTING_PREFIXES = (
    "RISK_",
    "DATABASE_",
    "REDIS_",
    "PAPER_",
    "AGENT_",
    "WS_",
    "OPENAI_",
    "ANTHROPIC_",
    "OPENROUTER_",
    "LLM_",
    "MARKET_DATA_",
    "SIMULATION_",
    "ALPHA_VANTAGE_",
)
_SETTING_NAMES = frozenset(
    {
        "ENVIRONMENT",
        "DATA_DIR",
        "HOST",
        "PORT",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "API_PREFIX",
        "CORS_ORIGINS",
        "AUTH_ENABLED",
        "SECRET_KEY",
        "RATE_LIMIT_DEFAULT",
        "RUN_MIGRATIONS",
        "LOAD_SEED_DATA",
        "SOLO_USER_EMAIL",
    }
)


def clean_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in _SETTING_NAMES and not key.upper().startswith(_SETTING_PREFIXES)
    }


def command(how: str, port: int) -> list[str]:
    if how == "script":
        return [sys.executable, str(REPO / "main_consolidated.py")]
    if how == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(REPO),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "main_consolidated:app",
        ]
    raise ValueError(f"unknown start command {how!r}")


@dataclass
class LiveServer:
    """One running server; `url` is its base URL, `log` what it printed so far."""

    data_dir: Path
    how: str = "script"
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines the server wrote (LOG_FORMAT=json)."""
        events = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = clean_environment()
        env.update(
            DATA_DIR=str(self.data_dir),
            HOST="127.0.0.1",
            PORT=str(self.port),
            LOG_FORMAT="json",
            ENVIRONMENT="test",
        )
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed command of ours
                command(self.how, self.port),
                cwd=self.data_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Poll /health until it answers (a readiness probe, as a load balancer does)."""
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with {self.process.returncode}:\n" + self.log()[-4000:]
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.url + "/health").status_code in (200, 503):
                        return
                time.sleep(0.1)
        raise RuntimeError(
            f"no /health answer within {START_DEADLINE_SECONDS}s:\n" + self.log()[-4000:]
        )

    def stop(self) -> int:
        """SIGTERM, as a process manager stops it; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise

    def assert_clean_log(self) -> None:
        """No traceback and no error-level line in what the server wrote."""
        errors = [
            f"{e.get('event')}: {str(e.get('exception', '')).strip().splitlines()[-1:]}"
            for e in self.log_events()
            if e.get("level") in ("error", "critical")
        ]
        assert not errors, errors[:10]
        assert "Traceback" not in self.log(), self.log()[-4000:]


@contextlib.contextmanager
def running(data_dir: Path, *, how: str = "script", **env: str) -> Iterator[LiveServer]:
    server = LiveServer(data_dir, how=how, env=env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
