"""The README's run command, started from a copy of the repository in a temp dir,
answers /health once started, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
START_DEADLINE_SECONDS = 120


def copy_repository(target: Path) -> None:
    """Copy what git would ship (tracked and new, not ignored files): a fresh clone's tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        source = REPO / raw.decode()
        if not source.is_file():
            continue
        destination = target / raw.decode()
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def get_health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            body: dict[str, Any] = json.loads(r.read())
            return body
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_a_healthy_service(tmp_path: Path) -> None:
    workdir = tmp_path / "cival"
    copy_repository(workdir)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "CIVAL_"))
    }
    env.update(PORT=str(port), HOST="127.0.0.1", LOG_FORMAT="json")
    process = subprocess.Popen(  # noqa: S603 - fixed command
        # The README's command; VENV points make at this run's environment so the
        # install step finds everything present instead of downloading it again.
        ["make", "run", f"VENV={sys.prefix}"],  # noqa: S607
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        body = None
        while time.monotonic() < deadline and process.poll() is None:
            body = get_health(port)
            if body is not None:
                break
            time.sleep(0.25)
        assert process.poll() is None, "make run exited before serving"
        assert body is not None, f"no /health answer within {START_DEADLINE_SECONDS}s"
        assert body["status"] == "healthy", body
        assert (workdir / "data" / "cival.db").exists(), "the embedded SQLite file was not made"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert "cival_stopped" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
