"""Over stdio, stdout carries JSON-RPC and nothing else, even with DEBUG logging and migrations.

The test speaks the protocol itself, line by line, so that every byte the server writes to
stdout is seen. An SDK client would skip or reject what it cannot parse.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.support.servers import issue_dev_token, server_env

MODERN_VERSION = "2026-07-28"
LEGACY_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "stdout-purity-test", "version": "0"}
MAX_LINE_BYTES = 16 * 1024 * 1024
EXCHANGE_TIMEOUT_SECONDS = 60


def modern_meta() -> dict[str, Any]:
    # In the 2026 protocol every request carries the version and client facts in _meta.
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
    }


def requests(handshake: str) -> list[dict[str, Any]]:
    """The messages of one session: handshake, tools/list, a few calls, an unknown method."""
    if handshake == "modern":
        meta = {"_meta": modern_meta()}
        opening = [{"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": meta}]
    else:
        meta = {}
        opening = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
        ]
    calls = [
        ("tools/list", {}),
        ("tools/call", {"name": "create_task", "arguments": {"title": "Check stdout"}}),
        ("tools/call", {"name": "list_tasks", "arguments": {}}),
        ("tools/call", {"name": "get_task", "arguments": {"task_id": 9_000_000_000_000}}),
        ("no/such-method", {}),
    ]
    return opening + [
        {"jsonrpc": "2.0", "id": number, "method": method, "params": {**params, **meta}}
        for number, (method, params) in enumerate(calls, start=2)
    ]


async def read_until_response(stdout: BufferedByteReceiveStream, request_id: int, seen: list[bytes]) -> None:
    """Read stdout lines into ``seen`` until the response to ``request_id`` arrives."""
    while True:
        line = await stdout.receive_until(b"\n", MAX_LINE_BYTES)
        seen.append(line)
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("id") == request_id and "method" not in message:
            return


async def drain(stdout: BufferedByteReceiveStream, seen: list[bytes]) -> None:
    while True:
        try:
            seen.append(await stdout.receive_until(b"\n", MAX_LINE_BYTES))
        except (anyio.EndOfStream, anyio.IncompleteRead):
            rest = stdout.buffer
            if rest.strip():
                seen.append(bytes(rest))
            return


async def run_session(process: Process, handshake: str) -> list[bytes]:
    assert process.stdin is not None
    assert process.stdout is not None
    stdout = BufferedByteReceiveStream(process.stdout)
    seen: list[bytes] = []
    for message in requests(handshake):
        await process.stdin.send(json.dumps(message).encode() + b"\n")
        if "id" in message:
            await read_until_response(stdout, message["id"], seen)
    await process.stdin.aclose()
    await drain(stdout, seen)
    await process.wait()
    return seen


def messages(lines: list[bytes]) -> list[dict[str, Any]]:
    """The lines that are JSON-RPC messages, decoded; the purity test reports the others."""
    return [json.loads(line) for line in lines if is_jsonrpc(line)]


def is_jsonrpc(line: bytes) -> bool:
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("jsonrpc") == "2.0"


class Session(NamedTuple):
    lines: list[bytes]
    stderr: str
    returncode: int
    token: str


@pytest.fixture(scope="module", params=["modern", "legacy"])
async def stdio_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Session:
    """Run one raw session against a server on a fresh SQLite file."""
    tmp_path = tmp_path_factory.mktemp(f"purity-{request.param}")
    data_dir = tmp_path / "data"
    token = issue_dev_token(data_dir, "purity-user")
    assert not (data_dir / "taskstore.db").exists()
    stderr_path = tmp_path / "stderr.log"
    command = [sys.executable, "-m", "server", "--log-level", "DEBUG", "serve"]
    with open(stderr_path, "wb") as stderr:
        with anyio.fail_after(EXCHANGE_TIMEOUT_SECONDS):
            process = await anyio.open_process(
                command, env=server_env(data_dir, None, TASKSTORE_TOKEN=token), stderr=stderr
            )
            async with process:
                lines = await run_session(process, request.param)
    return Session(lines, stderr_path.read_text(errors="replace"), process.returncode, token)


def test_every_stdout_line_is_a_jsonrpc_message(stdio_session):
    lines = stdio_session.lines
    assert [line for line in lines if not is_jsonrpc(line)] == []


def test_every_request_got_its_response(stdio_session):
    lines = stdio_session.lines
    responded = sorted(message["id"] for message in messages(lines) if "id" in message and "method" not in message)
    assert responded == [1, 2, 3, 4, 5, 6]


def test_tool_call_over_raw_stdio_succeeds(stdio_session):
    lines = stdio_session.lines
    created = next(message for message in messages(lines) if message.get("id") == 3)
    assert created["result"]["isError"] is False
    assert created["result"]["structuredContent"]["title"] == "Check stdout"


def test_unknown_method_gets_a_jsonrpc_error(stdio_session):
    lines = stdio_session.lines
    response = next(message for message in messages(lines) if message.get("id") == 6)
    assert "error" in response


def test_stderr_carries_the_debug_log(stdio_session):
    stderr = stdio_session.stderr
    assert " DEBUG " in stderr


def test_schema_was_migrated_at_start(stdio_session):
    stderr = stdio_session.stderr
    assert "upgrading schema" in stderr


def test_server_exits_cleanly_when_stdin_closes(stdio_session):
    assert stdio_session.returncode == 0


def test_debug_log_omits_the_token(stdio_session):
    assert stdio_session.token not in stdio_session.stderr
