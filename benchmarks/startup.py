"""Start-up time and idle memory of the service, next to a bare FastAPI app (the floor).

Run: .venv/bin/python benchmarks/startup.py [--runs 5]

For each run a fresh data dir (so the first start migrates and loads the sample data),
then a second start on the same data (the usual restart). Time is from spawning the
process to the first healthy /health; memory is the process's RSS after it has been
idle for two seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BARE_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/health")
async def health():
    return {"status": "healthy"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(json.loads(r.read()).get("status") == "healthy")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def measure(cmd: list[str], port: int, env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not healthy(port):
            if process.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {process.returncode}")
            if time.perf_counter() - started > 120:
                raise TimeoutError(f"{cmd} not healthy within 120s")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        time.sleep(2)
        return elapsed, rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    rows: dict[str, list[tuple[float, float]]] = {"bare": [], "first": [], "restart": []}
    for _ in range(args.runs):
        port = free_port()
        rows["bare"].append(
            measure([sys.executable, "-c", BARE_APP, str(port)], port, dict(os.environ))
        )
        with tempfile.TemporaryDirectory() as data:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
            env.update(DATA_DIR=data, LOG_LEVEL="WARNING")
            for label in ("first", "restart"):
                port = free_port()
                env["PORT"] = str(port)
                rows[label].append(measure([sys.executable, "main_consolidated.py"], port, env))

    print(f"runs: {args.runs} (SQLite, in-process bus, simulated market)")
    print(f"{'':32}{'start p50 (s)':>14}{'start max (s)':>14}{'idle RSS (MiB)':>16}")
    names = {
        "bare": "bare FastAPI app (floor)",
        "first": "cival, empty data dir",
        "restart": "cival, restart on its data",
    }
    for key, label in names.items():
        times = [t for t, _ in rows[key]]
        mem = [m for _, m in rows[key]]
        print(
            f"{label:32}{statistics.median(times):>14.2f}{max(times):>14.2f}"
            f"{statistics.median(mem):>16.1f}"
        )


if __name__ == "__main__":
    main()
