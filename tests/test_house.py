"""The house rules a newcomer relies on, checked on the source itself:

- a domain is a folder of services/ whose entry point is service.py;
- all SQL is in database/ (repositories): no query is built or run anywhere else;
- no module passes 600 lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("api", "core", "services", "models", "connectors", "utils")
MAX_LINES = 600

# Building or running a query: SQLAlchemy's constructs and the session's I/O.
QUERY = re.compile(
    r"(?<![.\w])(?<!def )(select|update|delete|insert)\("
    r"|\bsession\.(execute|scalars?|get|stream)\("
    r"|\bwith_for_update\(|\.dialect\.name\b"
)


def source_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py"))


@pytest.mark.parametrize("path", source_files(*SOURCE_DIRS), ids=lambda p: str(p.relative_to(REPO)))
def test_no_sql_outside_database(path: Path) -> None:
    offending = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if QUERY.search(line) and not line.lstrip().startswith("#")
    ]
    assert not offending, "queries belong in database/repositories/:\n" + "\n".join(offending)


@pytest.mark.parametrize(
    "path",
    source_files(*SOURCE_DIRS, "database", "benchmarks"),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_module_over_600_lines(path: Path) -> None:
    if "migrations" in path.parts:
        return  # a migration is a frozen record, not a module anyone extends
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it"


def test_each_domain_is_a_folder_with_its_service() -> None:
    services = REPO / "services"
    loose = sorted(
        p.name for p in services.glob("*.py") if p.name not in ("__init__.py", "container.py")
    )
    assert not loose, f"modules at the services/ root belong in a domain folder: {loose}"
    domains = [d for d in services.iterdir() if d.is_dir() and (d / "__init__.py").exists()]
    missing = sorted(
        d.name for d in domains if d.name != "infra" and not (d / "service.py").exists()
    )
    assert not missing, f"domains without a service.py entry point: {missing}"
