"""Fixtures of the end-to-end tests: a data directory and database per backend, and real servers.

On SQLite the servers use the default file in the data directory and migrate it at start. On
PostgreSQL the database is new and is upgraded with ``taskstore db upgrade`` first, as in a
deployment.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.support.servers import HttpServer, http_server, issue_dev_token, run_cli, stdio_parameters

# Upper bound for one client session's calls; far above what they take, so only a hang trips it.
SESSION_TIMEOUT_SECONDS = 60


@dataclass
class Deployment:
    backend: str
    data_dir: Path
    database_url: str | None  # None: the default SQLite file in data_dir

    def token(self, user: str, *, scopes: tuple[str, ...] = ()) -> str:
        return issue_dev_token(self.data_dir, user, scopes=scopes)


@pytest.fixture(scope="module")
async def deployment(backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Deployment:
    data_dir = tmp_path_factory.mktemp(f"e2e-{backend}")
    database_url = None
    if backend == "postgres":
        database_url = await request.getfixturevalue("postgres_databases").create("taskstore_e2e")
        upgraded = await anyio.to_thread.run_sync(lambda: run_cli(data_dir, database_url, "db", "upgrade"))
        assert upgraded.returncode == 0, upgraded.stderr
    return Deployment(backend, data_dir, database_url)


@pytest.fixture(scope="module")
def streamable_server(deployment: Deployment) -> Iterator[HttpServer]:
    with http_server(deployment.data_dir, deployment.database_url) as server:
        yield server


@pytest.fixture(scope="module")
def sse_server(deployment: Deployment) -> Iterator[HttpServer]:
    with http_server(deployment.data_dir, deployment.database_url, transport="sse") as server:
        yield server


@pytest.fixture
def new_user() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def connect(deployment: Deployment, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """``connect(transport, token)``: an SDK client session with the real server over that transport."""

    @asynccontextmanager
    async def open_session(transport: str, token: str) -> AsyncIterator[Client]:
        with anyio.fail_after(SESSION_TIMEOUT_SECONDS):
            if transport == "stdio":
                async with Client(stdio_parameters(deployment.data_dir, deployment.database_url, token)) as client:
                    yield client
                return
            server: HttpServer = request.getfixturevalue("sse_server" if transport == "sse" else "streamable_server")
            async with server.client(token) as client:
                yield client

    return open_session
