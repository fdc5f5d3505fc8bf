"""The pure core imports no infrastructure: the folders tell the pipeline (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "alpha_panda"
PURE = ["domain", "strategy", "risk", "execution", "portfolio", "backtest"]
FORBIDDEN = (
    "confluent_kafka", "redis", "sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn",
    "kiteconnect", "websockets", "psycopg", "httpx", "sqlite3", "alpha_panda.adapters",
    "alpha_panda.services", "alpha_panda.api",
)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_infrastructure(package: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert offenders == []


def test_the_check_catches_an_offender(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import redis\nfrom confluent_kafka import Producer\n")
    assert _imports(bad) == ["redis", "confluent_kafka"]
