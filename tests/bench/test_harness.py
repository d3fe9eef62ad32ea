"""The benchmark harness runs end to end in its smallest mode; no timing is asserted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import postgres_admin_url

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = (
    "W1 list: raw asyncpg (one statement)",
    "W1 list: store get_active_tasks",
    "W1 list: tool via in-process client",
    "W1 HTTP list_tasks, stateful",
    "W1 HTTP list_tasks, stateless JSON",
    "W1 HTTP no-op tool, stateful",
    "W2 create_task over HTTP",
    "W3 list_tasks first page",
    "W3 get_history(limit=50)",
    "W3 list_tasks deep page",
    "W5 list_tasks, 2 stateless replicas",
    "SQLite W1 list: store get_active_tasks",
    "server RSS under",
)


async def _database_exists(server_url: str, name: str) -> bool:
    dsn = make_url(server_url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


@pytest.mark.postgres
def test_smoke_run_reports_every_workload(tmp_path: Path) -> None:
    server_url = postgres_admin_url()
    database = f"taskstore_bench_smoke_{uuid.uuid4().hex[:8]}"
    output = tmp_path / "results.md"
    command = [
        sys.executable, "-m", "bench", "--smoke", "--server-url", server_url,
        "--database", database, "--drop", "--output", str(output),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stderr[-4000:]
    report = output.read_text()
    for workload in WORKLOADS:
        assert workload in report, f"{workload!r} missing from the report"
    assert "## Machine" in report
    assert "| two replicas return what one returns | 0 differing pages | 0.00 | PASS |" in report
    assert not asyncio.run(_database_exists(server_url, database))
