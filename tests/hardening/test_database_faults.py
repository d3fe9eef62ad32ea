"""Database faults: a restart under load, killed connections, a database down at start, a
wrong password, and concurrent writers racing on one row or one idempotency key.

The fault tests run against a private PostgreSQL 15 cluster in a temporary directory, on a
free 127.0.0.1 port. This module creates it and removes it at the end, so stopping and
restarting it never disturbs the shared server other tests use. The cluster is set up the
way docs/security.md recommends for a deployment: an owner role runs the migrations, a separate
application role with a password (SCRAM over TCP) serves, under row-level security.

The concurrency tests need no faults and use the session's databases on both backends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from mcp import Client

from server.app import build_server
from server.identity import Identity
from server.services import Services
from server.tools import ToolContext
from store import (
    ConversationRepository,
    Database,
    TaskRead,
    TaskRepository,
    VersionConflict,
    create_engine,
    database_config,
)
from tests.conftest import postgres_admin_url
from tests.support.servers import (
    free_port,
    http_server,
    in_process_client,
    issue_dev_token,
    server_env,
    stdio_parameters,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "taskstore"
OWNER, OWNER_PASSWORD = "taskstore_owner", "owner-Pass-1"
APP, APP_PASSWORD = "taskstore_app", "app-Pass-2"
UNAVAILABLE = "The database is unavailable right now; retry in a few seconds."
WRITERS = 16
# Bounded waits, not speed requirements: how long recovery may take before the test gives up.
RECOVERY_DEADLINE_SECONDS = 30.0
COMMAND_TIMEOUT_SECONDS = 60


def _run_as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *command],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=True,
        cwd="/",
    )


@dataclass
class PrivateCluster:
    """A throwaway PostgreSQL cluster owned by the postgres OS user, reachable on 127.0.0.1 only."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run_as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
            "-o", options, *args,
        )

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "stop")

    def is_running(self) -> bool:
        status = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True, timeout=COMMAND_TIMEOUT_SECONDS, cwd="/",
        )
        return status.returncode == 0

    def url(self, user: str = "postgres", password: str | None = None, database: str = DATABASE) -> str:
        credentials = f"{user}:{password}" if password else user
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/{database}"

    async def admin(self, database: str = DATABASE) -> asyncpg.Connection:
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database=database)


def _create_cluster() -> PrivateCluster:
    root = Path(tempfile.mkdtemp(prefix="taskstore-pg-"))
    shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    cluster = PrivateCluster(root, free_port())
    _run_as_postgres(str(PG_BIN / "initdb"), "-D", str(cluster.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
    # The superuser the test administers with keeps trust. Every other role needs its password.
    (cluster.data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    shutil.chown(cluster.data / "pg_hba.conf", "postgres", "postgres")
    cluster.start()
    return cluster


async def _set_up_roles(cluster: PrivateCluster) -> None:
    """The role setup of docs/security.md: owner migrates, application role serves."""
    admin = await cluster.admin("postgres")
    try:
        await admin.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER_PASSWORD}'")
        await admin.execute(f"CREATE ROLE {APP} LOGIN PASSWORD '{APP_PASSWORD}'")
        await admin.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER}")
    finally:
        await admin.close()

    migrate = subprocess.run(
        [sys.executable, "-m", "server", "db", "upgrade"],
        env=server_env(cluster.root, cluster.url(OWNER, OWNER_PASSWORD)),
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
    )
    assert migrate.returncode == 0, migrate.stderr

    owner = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user=OWNER, password=OWNER_PASSWORD, database=DATABASE)
    try:
        await owner.execute(f"GRANT USAGE ON SCHEMA public TO {APP}")
        await owner.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON task, conversation, message TO {APP}")
        await owner.execute(f"GRANT SELECT ON alembic_version TO {APP}")
        await owner.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP}")
    finally:
        await owner.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("the private-cluster tests need PostgreSQL 15 binaries and runuser")
    if os.geteuid() != 0:
        pytest.skip("the private-cluster tests start PostgreSQL as the postgres user, which needs root")
    new_cluster = _create_cluster()
    # The faults injected below must never reach the shared server other tests use.
    assert f":{new_cluster.port}/" not in postgres_admin_url()
    try:
        # On a thread: the fixture is sync and must not touch the event loop pytest-asyncio keeps.
        worker = threading.Thread(target=asyncio.run, args=(_set_up_roles(new_cluster),))
        worker.start()
        worker.join()
        assert new_cluster.is_running()
        yield new_cluster
    finally:
        if new_cluster.is_running():
            new_cluster.stop("immediate")
        shutil.rmtree(new_cluster.root, ignore_errors=True)


def _ensure_running(cluster: PrivateCluster) -> None:
    if not cluster.is_running():
        cluster.start()


async def _wait_until(predicate, deadline_seconds: float, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False


def _text(result) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(getattr(block, "text", "") for block in result.content)


# --- PostgreSQL restarted under load ---------------------------------------------------------------


async def test_restart_under_load_keeps_acknowledged_writes(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    user = f"restart-{uuid.uuid4().hex[:8]}"
    token = issue_dev_token(tmp_path, user)
    acknowledged: dict[str, int] = {}
    failures: list[str] = []
    recovered: set[int] = set()
    stop = asyncio.Event()
    restarted_at: list[float] = []

    async def writer(number: int, server) -> None:  # type: ignore[no-untyped-def]
        # Each item is retried with its idempotency key until acknowledged, as a careful
        # client would, so a commit whose reply was lost cannot become a second row.
        async with server.client(token) as client:
            item = 0
            for _ in range(5_000):
                if stop.is_set():
                    return
                title = f"w{number}-{item}"
                result = await client.call_tool("create_task", {"title": title, "idempotency_key": title})
                if result.is_error:
                    failures.append(_text(result))
                    await asyncio.sleep(0.05)
                    continue
                assert result.structured_content is not None
                acknowledged[title] = result.structured_content["id"]
                if restarted_at and time.monotonic() > restarted_at[0]:
                    recovered.add(number)
                item += 1

    with http_server(tmp_path, cluster.url(APP, APP_PASSWORD)) as server:
        writers = [asyncio.create_task(writer(number, server)) for number in range(WRITERS)]
        try:
            async def warmed_up() -> bool:
                return len(acknowledged) >= 2 * WRITERS

            assert await _wait_until(warmed_up, RECOVERY_DEADLINE_SECONDS)
            before_restart = len(acknowledged)
            await asyncio.to_thread(cluster.stop, "fast")
            # Long enough for every writer to hit the closed port at least once.
            await asyncio.sleep(1.5)
            await asyncio.to_thread(cluster.start)
            restarted_at.append(time.monotonic())

            async def all_recovered() -> bool:
                return len(recovered) == WRITERS

            came_back = await _wait_until(all_recovered, RECOVERY_DEADLINE_SECONDS)
        finally:
            stop.set()
            results = await asyncio.gather(*writers, return_exceptions=True)
        log = server.log()

    assert came_back, f"only {len(recovered)} of {WRITERS} writers succeeded again; server log:\n{log[-3000:]}"
    assert [result for result in results if result is not None] == []
    assert failures, "the restart failed no call: the fault did not hit the server"
    assert set(failures) == {UNAVAILABLE}
    assert "Traceback" not in log
    assert len(acknowledged) > before_restart

    admin = await cluster.admin()
    try:
        rows = await admin.fetch("SELECT id, title FROM task WHERE user_id = $1", user)
    finally:
        await admin.close()
    stored: dict[str, list[int]] = {}
    for row in rows:
        stored.setdefault(row["title"], []).append(row["id"])
    assert set(stored) == set(acknowledged)
    assert [title for title, ids in stored.items() if len(ids) != 1] == []
    assert {title: ids[0] for title, ids in stored.items()} == acknowledged
    print(f"\nrestart under load: {len(acknowledged)} acknowledged writes checked, {len(failures)} calls failed cleanly")


# --- connections killed between calls --------------------------------------------------------------


async def test_killed_connections_are_replaced_before_the_next_call(cluster: PrivateCluster) -> None:
    _ensure_running(cluster)
    config = database_config(cluster.url(APP, APP_PASSWORD))
    database = Database(create_engine(config, pool_size=4, max_overflow=0))
    services = Services(database, TaskRepository(database), ConversationRepository(database), config)
    server = build_server(ToolContext(identity=Identity(), services=services))
    user = f"killed-{uuid.uuid4().hex[:8]}"
    admin = await cluster.admin()
    killed_total = 0

    async def app_connections() -> int:
        return await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", APP)

    try:
        async with in_process_client(server, user) as client:
            for round_number in range(5):
                created = await client.call_tool("create_task", {"title": f"round {round_number}"})
                assert not created.is_error, _text(created)
                # In the select list, not the WHERE clause, so only the filtered rows are killed.
                killed = await admin.fetch(
                    "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE usename = $1", APP
                )
                killed_total += sum(1 for row in killed if row["done"])

                async def all_gone() -> bool:
                    return await app_connections() == 0

                # The kill is asynchronous. Waiting until the backends have exited makes the next
                # call meet dead connections in the pool rather than dying ones.
                assert await _wait_until(all_gone, 10.0)
                listed = await client.call_tool("list_tasks", {"status": "all"})
                assert not listed.is_error, _text(listed)
                assert listed.structured_content is not None
                assert listed.structured_content["count"] == round_number + 1
    finally:
        await admin.close()
        await database.dispose()
    assert killed_total >= 5


# --- database down when the server starts ----------------------------------------------------------


async def test_stdio_starts_while_database_is_down_and_recovers(cluster: PrivateCluster, tmp_path: Path) -> None:
    _ensure_running(cluster)
    user = f"stdio-{uuid.uuid4().hex[:8]}"
    token = issue_dev_token(tmp_path, user)
    parameters = stdio_parameters(tmp_path, cluster.url(APP, APP_PASSWORD), token)
    # The owner created the schema when the module started. Now the database goes away.
    await asyncio.to_thread(cluster.stop, "fast")
    try:
        async with Client(parameters) as client:
            tools = await client.list_tools()
            assert "create_task" in {tool.name for tool in tools.tools}
            down = await client.call_tool("create_task", {"title": "while down", "idempotency_key": "one"})
            assert down.is_error
            assert _text(down) == UNAVAILABLE
            listing = await client.call_tool("list_tasks", {})
            assert _text(listing) == UNAVAILABLE

            await asyncio.to_thread(cluster.start)
            outcome: list[object] = []

            async def created() -> bool:
                result = await client.call_tool("create_task", {"title": "after start", "idempotency_key": "one"})
                outcome.append(result)
                return not result.is_error

            assert await _wait_until(created, RECOVERY_DEADLINE_SECONDS, interval=0.5)
            listed = await client.call_tool("list_tasks", {"status": "all"})
    finally:
        _ensure_running(cluster)
    assert listed.structured_content is not None
    assert [task["title"] for task in listed.structured_content["tasks"]] == ["after start"]


# --- a wrong password ------------------------------------------------------------------------------

WRONG_PASSWORD = "wrong-Secret-4711"


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("db", "current"), id="db-current"),
        pytest.param(("db", "upgrade"), id="db-upgrade"),
        pytest.param(("db", "purge", "--older-than", "30d"), id="db-purge"),
        pytest.param(("serve", "--transport", "streamable-http", "--port", "{port}"), id="serve-http"),
        pytest.param(("serve",), id="serve-stdio"),
    ],
)
def test_wrong_password_error_hides_password(
    cluster: PrivateCluster, tmp_path: Path, command: tuple[str, ...]
) -> None:
    _ensure_running(cluster)
    arguments = [part.replace("{port}", str(free_port())) for part in command]
    env = server_env(tmp_path, cluster.url(APP, WRONG_PASSWORD), TASKSTORE_TOKEN="not-checked-before-the-database")
    finished = subprocess.run(
        [sys.executable, "-m", "server", *arguments],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1
    assert f"127.0.0.1:{cluster.port}" in finished.stderr
    assert f"'{DATABASE}'" in finished.stderr
    assert "password authentication failed" in finished.stderr
    assert WRONG_PASSWORD not in output
    assert "Traceback" not in output


# --- concurrent writers (both backends, the session's databases) -----------------------------------


async def test_concurrent_updates_one_winner(
    tasks: TaskRepository, user_ids: tuple[str, str]
) -> None:
    user = user_ids[0]
    task = await tasks.create_task(user, {"title": "contested"})
    results = await asyncio.gather(
        *(tasks.update_task(user, task.id, {"title": f"writer {number}"}, expected_version=1) for number in range(50)),
        return_exceptions=True,
    )
    winners = [result for result in results if isinstance(result, TaskRead)]
    conflicts = [result for result in results if isinstance(result, VersionConflict)]
    assert len(winners) == 1
    assert len(conflicts) == 49
    assert {conflict.current for conflict in conflicts} == {2}
    stored = await tasks.get_task(user, task.id)
    assert stored.version == 2
    assert stored.title == winners[0].title


async def test_concurrent_key_retries_one_row(
    tasks: TaskRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    from sqlalchemy import func, select

    from store.tasks import task_table

    user = user_ids[0]
    results = await asyncio.gather(
        *(tasks.create_task(user, {"title": f"retry {number}", "idempotency_key": "same-key"}) for number in range(20)),
        return_exceptions=True,
    )
    assert [result for result in results if not isinstance(result, TaskRead)] == []
    assert len({result.id for result in results}) == 1
    async with database.transaction(user, "count") as connection:
        count = (
            await connection.execute(
                select(func.count()).select_from(task_table).where(
                    task_table.c.user_id == user, task_table.c.idempotency_key == "same-key"
                )
            )
        ).scalar_one()
    assert count == 1
