"""Schemathesis over the whole API of the live server, on both backends.

Its own command line (`st run`) drives the server through /openapi.json: every operation
gets examples, boundary values (coverage), generated valid and invalid requests (fuzzing)
and linked sequences (stateful: create an agent, then read, update, start, delete it),
bounded and seeded so a run is repeatable. For every response: never a 5xx, a status
code the operation documents, a body and content type matching what it declares, a
request the schema forbids refused with a 4xx, and (tests/e2e/fuzz_hooks.py) every
error in the one error shape. A failure prints
schemathesis's report: each failing request with a curl line that reproduces it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import REPO, LiveServer

EXAMPLES_PER_OPERATION = 25
SEED = 20261201
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    # A request the schema forbids (a wrong type, a value out of range, a number where
    # a date-time goes) is refused, never taken for something else.
    "negative_data_rejection",
    "error_shape",
)


@pytest.fixture(scope="module")
def module_env() -> dict[str, str]:
    # Thousands of requests a minute from one address: the default limit would answer 429
    # and hide what the operations themselves do.
    return {"RATE_LIMIT_DEFAULT": "1000000/minute"}


def test_no_server_error_and_every_response_as_documented(
    server: LiveServer, tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.e2e.fuzz_hooks", PYTHONPATH=str(REPO))
    run = subprocess.run(  # noqa: S603 - a fixed command of ours
        [
            str(st),
            "run",
            f"{server.url}/openapi.json",
            "--phases=examples,coverage,fuzzing,stateful",
            f"--checks={','.join(CHECKS)}",
            f"--max-examples={EXAMPLES_PER_OPERATION}",
            f"--seed={SEED}",
            "--generation-deterministic",
            "--workers=1",
            "--request-timeout=30",
            "--max-failures=50",
            "--no-color",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = run.stdout[-20000:] + run.stderr[-4000:]
    assert run.returncode == 0, report
    assert "Tested: " in run.stdout, report
    assert "unhandled_error" not in server.log(), server.log()[-4000:]
