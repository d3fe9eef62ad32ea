"""Start the real server for end-to-end tests: as a subprocess over stdio or HTTP, or in process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from server.app import TaskstoreServer

STARTUP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """Environment for a server subprocess: this interpreter's, minus anything the test did not choose."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TASKSTORE_", "BETTER_AUTH_"))}
    env.pop("DATABASE_URL", None)
    env["TASKSTORE_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def issue_dev_token(data_dir: Path, user: str, ttl: str = "1h", scopes: tuple[str, ...] = ()) -> str:
    command = [sys.executable, "-m", "server", "token", "issue", "--user", user, "--ttl", ttl]
    for scope in scopes:
        command += ["--scope", scope]
    result = subprocess.run(
        command, env=server_env(data_dir, None), capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip()


@dataclass
class HttpServer:
    process: subprocess.Popen[bytes]
    port: int
    transport: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/sse" if self.transport == "sse" else f"{self.base_url}/mcp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @asynccontextmanager
    async def client(self, token: str) -> AsyncIterator[Client]:
        """An SDK client session over this server's transport, sending ``token`` as the bearer."""
        headers = {"Authorization": f"Bearer {token}"}
        if self.transport == "sse":
            async with Client(_SseTransport(self.url, headers)) as client:
                yield client
            return
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(self.url, http_client=http)) as client:
                yield client


class _SseTransport:
    """Adapts the SDK's sse_client context manager to the Client's Transport interface."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._context = sse_client(url, headers=headers)

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        return await self._context.__aenter__()

    async def __aexit__(self, *exc_info):  # type: ignore[no-untyped-def]
        return await self._context.__aexit__(*exc_info)


@contextmanager
def http_server(
    data_dir: Path,
    database_url: str | None,
    *,
    transport: str = "streamable-http",
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[HttpServer]:
    """Run ``taskstore serve`` over HTTP on a free 127.0.0.1 port until the block ends."""
    port = free_port()
    log_path = data_dir / f"server-{port}.log"
    command = [
        sys.executable, "-m", "server", "serve", "--transport", transport,
        "--host", "127.0.0.1", "--port", str(port), *extra_args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=server_env(data_dir, database_url, **(env or {})), stdout=log, stderr=subprocess.STDOUT
        )
    server = HttpServer(process, port, transport, log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_healthy(server: HttpServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx2.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not become healthy in {STARTUP_TIMEOUT_SECONDS} s:\n{server.log()}")


def stdio_parameters(
    data_dir: Path, database_url: str | None, token: str, *args: str, serve_args: tuple[str, ...] = (), **env: str
) -> StdioServerParameters:
    """Parameters that make the SDK client launch ``taskstore [args] serve [serve_args]`` over stdio."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", *args, "serve", *serve_args],
        env=server_env(data_dir, database_url, TASKSTORE_TOKEN=token, **env),
    )


def run_cli(
    data_dir: Path, database_url: str | None, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``taskstore ARGS`` to completion with nothing on stdin; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=server_env(data_dir, database_url, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@asynccontextmanager
async def in_process_client(server: TaskstoreServer, user_id: str, scopes: list[str] | None = None,
                            expires_at: int | None = None) -> AsyncIterator[Client]:
    """A client connected in process, acting for ``user_id`` as a verified token would.

    The server task is started inside ``Client`` and copies the context at that moment, so
    several clients opened one after another each keep their own user.
    """
    access_token = AccessToken(
        token="in-process-test-token",
        client_id="tests",
        scopes=scopes if scopes is not None else ["tasks:read", "tasks:write"],
        expires_at=expires_at if expires_at is not None else int(time.time()) + 3600,
        subject=user_id,
    )
    reset = auth_context_var.set(AuthenticatedUser(access_token))
    try:
        async with Client(server) as client:
            yield client
    finally:
        auth_context_var.reset(reset)
