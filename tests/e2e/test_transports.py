"""The server as a real subprocess over stdio, streamable HTTP and SSE, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from alembic.script import ScriptDirectory
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

from server.auth.dev_issuer import DevIssuer
from store import migrate
from tests.support.servers import HttpServer, http_server, issue_dev_token, run_cli, stdio_parameters

TRANSPORTS = ["stdio", "streamable-http", "sse"]
HTTP_TRANSPORTS = ["streamable-http", "sse"]
STREAMABLE_ACCEPT = "application/json, text/event-stream"
DISCOVER = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def http_server_of(request: pytest.FixtureRequest, transport: str) -> HttpServer:
    return request.getfixturevalue("sse_server" if transport == "sse" else "streamable_server")


# --- the tools over each transport ---------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_task_survives_create_complete_delete_restore(deployment, connect, new_user, transport):
    async with connect(transport, deployment.token(new_user)) as client:
        created = await ok(client, "create_task", title="Water the plants", priority="medium")
        pending = await ok(client, "list_tasks")
        completed = await ok(client, "complete_task", task_id=created["id"])
        done = await ok(client, "list_tasks", status="completed")
        deleted = await ok(client, "delete_task", task_id=created["id"])
        trash = await ok(client, "list_deleted_tasks")
        restored = await ok(client, "restore_task", task_id=created["id"])
        fetched = await ok(client, "get_task", task_id=created["id"])
    assert [task["id"] for task in pending["tasks"]] == [created["id"]]
    assert completed["completed"] is True
    assert [task["id"] for task in done["tasks"]] == [created["id"]]
    assert deleted["task"]["deleted_at"] is not None
    assert [task["id"] for task in trash["tasks"]] == [created["id"]]
    assert restored["deleted_at"] is None
    assert fetched["title"] == "Water the plants"
    assert fetched["completed"] is True


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_history_returns_messages_oldest_first(deployment, connect, new_user, transport):
    async with connect(transport, deployment.token(new_user)) as client:
        conversation = await ok(client, "create_conversation", title="Trip")
        for role, content in (("user", "Where to?"), ("assistant", "Lisbon."), ("user", "Book it.")):
            await ok(client, "add_message", conversation_id=conversation["id"], role=role, content=content)
        history = await ok(client, "get_history", conversation_id=conversation["id"])
    assert [message["content"] for message in history["messages"]] == ["Where to?", "Lisbon.", "Book it."]
    assert [message["role"] for message in history["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tool_error_reaches_the_client_as_text(deployment, connect, new_user, transport):
    async with connect(transport, deployment.token(new_user)) as client:
        result = await client.call_tool("get_task", {"task_id": 9_000_000_000_000})
    text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
    assert result.is_error is True
    assert "Task 9000000000000 was not found" in text


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_users_see_only_their_tasks(deployment, connect, new_user, transport):
    other_user = f"{new_user}-other"
    async with connect(transport, deployment.token(new_user)) as client:
        await ok(client, "create_task", title="Mine only")
    async with connect(transport, deployment.token(other_user)) as client:
        listed = await ok(client, "list_tasks", status="all")
    assert listed["tasks"] == []


async def test_postgres_auto_migrate_on_fresh_database(postgres_databases, tmp_path, new_user):
    url = await postgres_databases.create("taskstore_e2e_auto")
    token = issue_dev_token(tmp_path, new_user)
    parameters = stdio_parameters(tmp_path, url, token, serve_args=("--auto-migrate",))
    with anyio.fail_after(60):
        async with Client(parameters) as client:
            listed = await ok(client, "list_tasks")
    current = await anyio.to_thread.run_sync(lambda: run_cli(tmp_path, url, "db", "current"))
    assert listed["tasks"] == []
    assert current.returncode == 0
    assert "(at head)" in current.stdout


# --- stdio start-up checks -----------------------------------------------------------------------


def serve_stdio(data_dir: Path, database_url: str | None, token: str | None, *serve_args: str):  # type: ignore[no-untyped-def]
    extra = {} if token is None else {"TASKSTORE_TOKEN": token}
    return run_cli(data_dir, database_url, "serve", *serve_args, **extra)


def test_stdio_without_token_exits_1(tmp_path):
    result = serve_stdio(tmp_path, None, None)
    assert result.returncode == 1
    assert "TASKSTORE_TOKEN is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def invalid_token(kind: str, data_dir: Path, elsewhere: Path) -> tuple[str, str]:
    """A token the server in ``data_dir`` must reject, and the reason it should name."""
    if kind == "malformed":
        return "not-a-jwt-secret-value", "malformed token"
    if kind == "expired":
        return DevIssuer.load_or_create(data_dir).issue("someone", -3600), "token expired"
    if kind == "foreign-key":
        return DevIssuer.load_or_create(elsewhere).issue("someone", 3600), "unknown signing key"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["malformed", "expired", "foreign-key"])
def test_stdio_invalid_token_exits_1(tmp_path, kind):
    token, reason = invalid_token(kind, tmp_path / "data", tmp_path / "elsewhere")
    result = serve_stdio(tmp_path / "data", None, token)
    assert result.returncode == 1
    assert "TASKSTORE_TOKEN was rejected" in result.stderr
    assert reason in result.stderr
    assert token not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_stdio_rejects_schema_behind_head(postgres_databases, tmp_path, new_user):
    url = await postgres_databases.create("taskstore_e2e_behind")
    base = await anyio.to_thread.run_sync(migrate_to_base_revision, tmp_path, url)
    token = issue_dev_token(tmp_path, new_user)
    result = await anyio.to_thread.run_sync(serve_stdio, tmp_path, url, token)
    assert result.returncode == 1
    assert "taskstore db upgrade" in result.stderr
    assert f"revision {base}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_http_rejects_schema_behind_head(postgres_databases, tmp_path):
    url = await postgres_databases.create("taskstore_e2e_behind")
    await anyio.to_thread.run_sync(migrate_to_base_revision, tmp_path, url)
    command = ("serve", "--transport", "streamable-http", "--host", "127.0.0.1", "--port", "0")
    result = await anyio.to_thread.run_sync(lambda: run_cli(tmp_path, url, *command, timeout=60))
    assert result.returncode == 1
    assert "taskstore db upgrade" in result.stderr
    assert "Uvicorn running" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_http_serves_schema_ahead_of_code(postgres_databases, tmp_path, new_user):
    """A newer release migrated the database during a rolling deploy: old replicas keep serving."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = await postgres_databases.create("taskstore_e2e_ahead")
    upgraded = await anyio.to_thread.run_sync(lambda: run_cli(tmp_path, url, "db", "upgrade"))
    assert upgraded.returncode == 0, upgraded.stderr
    connection = await asyncpg.connect(make_url(url).render_as_string(hide_password=False))
    try:
        await connection.execute("UPDATE alembic_version SET version_num = 'f00dcafe9999'")
    finally:
        await connection.close()

    with http_server(tmp_path, url) as server:
        ready = httpx2.get(f"{server.base_url}/readyz", timeout=10)
        async with server.client(issue_dev_token(tmp_path, new_user)) as client:
            result = await client.call_tool("create_task", {"title": "served by the older replica"})
        log = server.log()

    assert ready.status_code == 200
    assert ready.json()["note"] == "schema ahead of this version"
    assert not result.is_error, result
    assert "newer than this version" in log


def migrate_to_base_revision(data_dir: Path, url: str) -> str:
    """Upgrade ``url`` to the first migration only, which is behind head; return that revision."""
    base = ScriptDirectory.from_config(migrate.alembic_config()).get_base()
    assert base != migrate.head_revision()
    upgraded = run_cli(data_dir, url, "db", "upgrade", base)
    assert upgraded.returncode == 0, upgraded.stderr
    return base


# --- HTTP: authentication, health and host checks ------------------------------------------------


def protected_request(server: HttpServer, headers: dict[str, str]) -> httpx2.Response:
    """The request a client opens a session with, on either HTTP transport."""
    if server.transport == "sse":
        # Without a valid bearer token the server responds before it opens an event stream.
        return httpx2.get(server.url, headers=headers, timeout=10)
    return httpx2.post(server.url, headers={"Accept": STREAMABLE_ACCEPT, **headers}, json=DISCOVER, timeout=10)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_http_without_token_gets_401_with_www_authenticate(request, deployment, transport):
    response = protected_request(http_server_of(request, transport), {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_http_expired_token_gets_401(request, deployment, transport):
    token = DevIssuer.load_or_create(deployment.data_dir).issue("someone", -3600)
    response = protected_request(http_server_of(request, transport), {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "token expired" in response.headers["www-authenticate"]
    assert token not in response.text
    assert token not in response.headers["www-authenticate"]


def test_http_read_only_write_gets_403(streamable_server, deployment, new_user):
    token = deployment.token(new_user, scopes=("tasks:read",))
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "create_task", "arguments": {"title": "x"}}}
    response = httpx2.post(
        streamable_server.url, headers={"Authorization": f"Bearer {token}", "Accept": STREAMABLE_ACCEPT},
        json=call, timeout=10,
    )
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_http_read_only_token_may_list_tasks(streamable_server, deployment, new_user):
    with anyio.fail_after(60):
        async with streamable_server.client(deployment.token(new_user, scopes=("tasks:read",))) as client:
            listed = await ok(client, "list_tasks")
    assert listed["tasks"] == []


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_healthz_returns_200(request, deployment, transport):
    response = httpx2.get(f"{http_server_of(request, transport).base_url}/healthz", timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_readyz_returns_200_at_head(request, deployment, transport):
    response = httpx2.get(f"{http_server_of(request, transport).base_url}/readyz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "schema": migrate.head_revision()}


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_foreign_host_header_gets_421(request, deployment, new_user, transport):
    headers = {"Host": "evil.example", "Authorization": f"Bearer {deployment.token(new_user)}"}
    response = protected_request(http_server_of(request, transport), headers)
    assert response.status_code == 421


@pytest.fixture(scope="module")
def server_allowing_evil_host(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data_dir = tmp_path_factory.mktemp("allowed-host")
    with http_server(data_dir, None, extra_args=("--allowed-host", "evil.example")) as server:
        yield server


async def test_allowed_host_is_served(server_allowing_evil_host, new_user):
    token = issue_dev_token(server_allowing_evil_host.log_path.parent, new_user)
    headers = {"Host": "evil.example", "Authorization": f"Bearer {token}"}
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(server_allowing_evil_host.url, http_client=http)) as client:
                listed = await ok(client, "list_tasks")
    assert listed["tasks"] == []


def test_host_not_in_allowed_list_still_gets_421(server_allowing_evil_host, new_user):
    token = issue_dev_token(server_allowing_evil_host.log_path.parent, new_user)
    headers = {"Host": "other.example", "Authorization": f"Bearer {token}"}
    response = protected_request(server_allowing_evil_host, headers)
    assert response.status_code == 421


def test_server_log_omits_bearer_token(streamable_server, deployment, new_user):
    token = deployment.token(new_user)
    protected_request(streamable_server, {"Authorization": f"Bearer {token}"})
    protected_request(streamable_server, {"Authorization": f"Bearer {token}x"})
    assert token not in streamable_server.log()
