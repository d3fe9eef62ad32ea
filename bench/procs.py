"""Server subprocesses on 127.0.0.1: the product (``taskstore serve``) and the no-op floor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

STARTUP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    """This interpreter's environment minus any taskstore setting the harness did not choose."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TASKSTORE_", "BETTER_AUTH_"))}
    env.pop("DATABASE_URL", None)
    env["TASKSTORE_DATA_DIR"] = str(data_dir)
    for key, value in os.environ.items():
        # BENCH_TASKSTORE_X=... sets TASKSTORE_X for the servers (to try a setting by hand).
        if key.startswith("BENCH_TASKSTORE_"):
            env[key.removeprefix("BENCH_")] = value
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


@dataclass
class Server:
    label: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    peak_rss: int = 0
    _sampler: threading.Thread | None = field(default=None, repr=False)
    _sampling: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        """CPU seconds (user and system) the server process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def start_sampling(self, interval: float = 0.05) -> None:
        """Record the peak RSS of the server process until ``stop_sampling``."""
        self.peak_rss = self.rss()
        self._sampling.clear()

        def sample() -> None:
            while not self._sampling.wait(interval):
                self.peak_rss = max(self.peak_rss, self.rss())

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> int:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(timeout=5)
        self.peak_rss = max(self.peak_rss, self.rss())
        return self.peak_rss

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_taskstore(label: str, data_dir: Path, database_url: str, *extra: str) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "server", "serve", "--transport", "streamable-http",
        "--host", "127.0.0.1", "--port", str(port), *extra,
    ]
    return _start(label, command, port, data_dir, database_url)


def start_noop(label: str, data_dir: Path, *extra: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "bench.noop_server", "--port", str(port), *extra]
    return _start(label, command, port, data_dir, None)


def _start(label: str, command: list[str], port: int, data_dir: Path, database_url: str | None) -> Server:
    log_path = data_dir / f"{label}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=server_env(data_dir, database_url), stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
    return Server(label, process, port, log_path)


def wait_healthy(servers: list[Server]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    pending = list(servers)
    while pending and time.monotonic() < deadline:
        for server in list(pending):
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.label} exited with {server.process.returncode}:\n{server.log_path.read_text()}")
            try:
                if httpx2.get(f"http://127.0.0.1:{server.port}/healthz", timeout=1).status_code == 200:
                    pending.remove(server)
            except httpx2.HTTPError:
                pass
        if pending:
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{', '.join(server.label for server in pending)} did not start in {STARTUP_TIMEOUT_SECONDS} s")


class RoundRobinTransport(httpx2.AsyncBaseTransport):
    """Send each request to the next port in turn, as a load balancer in front of replicas would."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.turn = 0
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        request.url = request.url.copy_with(port=port)
        request.headers["Host"] = f"127.0.0.1:{port}"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def http_client(url: str, token: str, ports: list[int] | None = None) -> AsyncIterator[Client]:
    """Open an SDK client session with ``token`` as the bearer, spread over ``ports`` when given."""
    headers = {"Authorization": f"Bearer {token}"}
    transport = RoundRobinTransport(ports) if ports else None
    async with httpx2.AsyncClient(headers=headers, timeout=60, transport=transport) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client
