"""Tokens from a real Better Auth 1.7, accepted over HTTP and stdio, each acting for its own user.

Better Auth and this server share one fresh PostgreSQL database: Better Auth's tables from its
own migrations, ours from Alembic (the HTTP server starts with --auto-migrate). The stdio
servers use the same database and the same settings.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
from mcp import Client

from tests.auth.support import asyncpg_dsn
from tests.conftest import PostgresDatabases
from tests.support import better_auth
from tests.support.better_auth import BetterAuthServer, SignedUpUser
from tests.support.servers import HttpServer, free_port, http_server, stdio_parameters

pytestmark = [pytest.mark.postgres, pytest.mark.node]

SECRET = "interop-secret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789"
SCOPES = ["openid", "profile", "email", "offline_access", "tasks:read", "tasks:write"]
WRITE_SCOPE = "offline_access tasks:read tasks:write"
KINDS = ["jwt", "session-raw", "session-signed", "session-urlencoded", "oauth", "oauth-openid"]
TRANSPORTS = ["http", "stdio"]


@dataclass
class Stack:
    better_auth: BetterAuthServer
    server: HttpServer
    database_url: str
    data_dir: Path
    users: dict[str, SignedUpUser]
    tokens: dict[str, dict[str, str]]

    def stdio_env(self) -> dict[str, str]:
        return {
            "BETTER_AUTH_URL": self.better_auth.base_url,
            "BETTER_AUTH_SECRET": SECRET,
            # Over stdio there is no served URL: the audience of OAuth access tokens is configured.
            "TASKSTORE_RESOURCE_URL": self.server.url,
        }


def _tokens(ba: BetterAuthServer, user: SignedUpUser) -> dict[str, str]:
    return {
        "jwt": ba.get_jwt(user.session_token),
        "session-raw": user.session_token,
        "session-signed": user.signed_session_token,
        "session-urlencoded": urllib.parse.quote(user.signed_session_token, safe=""),
        "oauth": ba.get_mcp_access_token(user.session_token, scope=WRITE_SCOPE).access_token,
        # With openid the access token's aud becomes a list: the resource and the userinfo URL.
        "oauth-openid": ba.get_mcp_access_token(user.session_token, scope="openid " + WRITE_SCOPE).access_token,
    }


@pytest.fixture(scope="module")
async def stack(postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    if not better_auth.is_available():
        message = "Better Auth is not installed: run `npm ci --prefix tests/node`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Better Auth's database helper accepts only names starting with ba_.
    database_url = await postgres_databases.create("ba")
    data_dir = tmp_path_factory.mktemp("interop")
    better_auth_port = free_port()
    env = {"BETTER_AUTH_URL": f"http://127.0.0.1:{better_auth_port}", "BETTER_AUTH_SECRET": SECRET}
    # Our server starts first (it needs no key until the first token) so that Better Auth can
    # bind its OAuth access tokens to our /mcp URL.
    with http_server(data_dir, database_url, extra_args=("--auto-migrate",), env=env) as server:
        with BetterAuthServer(
            database_url,
            port=better_auth_port,
            secret=SECRET,
            mcp_resource=server.url,
            mcp_scopes=SCOPES,
            log_path=data_dir / "better-auth.log",
        ) as ba:
            alice = ba.sign_up("alice@example.test", "alice's long password", "Alice")
            bob = ba.sign_up("bob@example.test", "bob's long password!", "Bob")
            users = {"alice": alice, "bob": bob}
            tokens = {name: _tokens(ba, user) for name, user in users.items()}
            yield Stack(ba, server, database_url, data_dir, users, tokens)


@asynccontextmanager
async def connect(stack: Stack, transport: str, token: str) -> AsyncIterator[Client]:
    if transport == "http":
        async with stack.server.client(token) as client:
            yield client
    else:
        parameters = stdio_parameters(stack.data_dir, stack.database_url, token, **stack.stdio_env())
        async with Client(parameters) as client:
            yield client


def _text(result: Any) -> str:
    parts = [getattr(item, "text", "") for item in result.content]
    return " ".join(parts) + json.dumps(result.structured_content or {})


async def _owner_of(database_url: str, title: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch("SELECT user_id FROM task WHERE title = $1", title)
    finally:
        await connection.close()
    return [row["user_id"] for row in rows]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", KINDS)
async def test_token_acts_for_its_user_only(stack: Stack, kind: str, transport: str) -> None:
    title = f"interop {kind} {transport} {uuid.uuid4().hex[:8]}"

    async with connect(stack, transport, stack.tokens["alice"][kind]) as alice:
        created = await alice.call_tool("create_task", {"title": title})
        seen_by_alice = await alice.call_tool("list_tasks", {})
    async with connect(stack, transport, stack.tokens["bob"][kind]) as bob:
        seen_by_bob = await bob.call_tool("list_tasks", {})

    assert not created.is_error, _text(created)
    assert not seen_by_alice.is_error, _text(seen_by_alice)
    assert not seen_by_bob.is_error, _text(seen_by_bob)
    assert title in _text(seen_by_alice)
    assert title not in _text(seen_by_bob)
    assert await _owner_of(stack.database_url, title) == [stack.users["alice"].user_id]


async def _post(stack: Stack, token: str, tool: str, arguments: dict[str, Any]) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        return await client.post(stack.server.url, headers=headers, content=json.dumps(body))


async def test_signed_out_session_is_rejected(stack: Stack) -> None:
    session = stack.better_auth.sign_in("alice@example.test", "alice's long password")
    stack.better_auth.sign_out(session.session_token)

    response = await _post(stack, session.signed_session_token, "create_task", {"title": "after sign-out"})

    assert response.status_code == 401
    assert "unknown session token" in response.json()["error_description"]
    assert session.session_token not in response.text


async def test_deleted_users_session_is_rejected(stack: Stack) -> None:
    carol = stack.better_auth.sign_up("carol@example.test", "carol's long password", "Carol")
    async with connect(stack, "http", carol.session_token) as client:
        before = await client.call_tool("list_tasks", {})
    stack.better_auth.delete_user(carol)

    response = await _post(stack, carol.session_token, "list_tasks", {})

    assert not before.is_error
    assert response.status_code == 401
    # Better Auth's foreign key deletes the user's sessions with the user.
    assert "unknown session token" in response.json()["error_description"]


async def test_read_only_oauth_token_reads_but_cannot_write(stack: Stack) -> None:
    token = stack.better_auth.get_mcp_access_token(
        stack.users["alice"].session_token, scope="offline_access tasks:read"
    ).access_token

    write = await _post(stack, token, "create_task", {"title": "read-only write"})
    async with connect(stack, "http", token) as client:
        read = await client.call_tool("list_tasks", {})
    async with connect(stack, "stdio", token) as client:
        stdio_write = await client.call_tool("create_task", {"title": "read-only write over stdio"})

    assert write.status_code == 403
    assert 'error="insufficient_scope"' in write.headers["www-authenticate"]
    assert "tasks:write" in write.json()["error_description"]
    assert not read.is_error
    assert stdio_write.is_error
    assert "read-only" in _text(stdio_write)
    assert await _owner_of(stack.database_url, "read-only write") == []
    assert await _owner_of(stack.database_url, "read-only write over stdio") == []


async def test_opaque_oauth_token_is_rejected(stack: Stack) -> None:
    # Without the resource parameter Better Auth issues an opaque access token (no JWT), which
    # only its introspection endpoint could check. Better Auth does not issue a token for a
    # resource it does not know, so the attack table covers the token for another resource.
    token = stack.better_auth.get_mcp_access_token(
        stack.users["alice"].session_token, scope="openid " + WRITE_SCOPE, resources=[]
    ).access_token

    response = await _post(stack, token, "list_tasks", {})

    assert "." not in token
    assert response.status_code == 401
    assert "opaque OAuth access token" in response.json()["error_description"]
    assert token not in response.text


async def test_metadata_points_at_better_auth(stack: Stack) -> None:
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        ours = await client.get(stack.server.base_url + "/.well-known/oauth-protected-resource/mcp")
    issuer = ours.json()["authorization_servers"][0]
    # RFC 8414: the authorization server's metadata lives under /.well-known/ plus the issuer's path.
    path = urllib.parse.urlsplit(issuer).path
    theirs = stack.better_auth.http.get(f"/.well-known/oauth-authorization-server{path}")

    assert ours.status_code == 200
    assert ours.json()["resource"] == stack.server.url
    assert issuer == stack.better_auth.oauth_issuer
    assert theirs.status_code == 200
    assert theirs.json()["issuer"] == issuer


async def test_jwt_and_session_same_user(stack: Stack) -> None:
    import jwt

    claims = jwt.decode(stack.tokens["alice"]["jwt"], options={"verify_signature": False})
    oauth_claims = jwt.decode(stack.tokens["alice"]["oauth"], options={"verify_signature": False})

    assert claims["sub"] == stack.users["alice"].user_id
    assert oauth_claims["sub"] == stack.users["alice"].user_id
    assert jwt.get_unverified_header(stack.tokens["alice"]["oauth"])["typ"] == "at+jwt"
