"""The MCP Inspector CLI, a client written by others, lists and calls our tools over stdio and HTTP.

CI installs it with ``npm ci --prefix tests/node`` before the tests, so there a missing
install is a failure; elsewhere the tests are skipped until it is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import HttpServer, http_server, issue_dev_token

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
INSPECTOR = NODE_DIR / "node_modules" / ".bin" / "mcp-inspector"
INSPECTOR_TIMEOUT_SECONDS = 120
EXPECTED_TOOLS = {
    "create_task", "create_tasks", "list_tasks", "get_task", "update_task", "complete_task", "complete_tasks",
    "delete_task", "restore_task", "list_deleted_tasks", "create_conversation", "list_conversations",
    "add_message", "get_history", "delete_conversation",
}

pytestmark = pytest.mark.node


@pytest.fixture(scope="module", autouse=True)
def inspector_installed() -> None:
    missing = [str(path) for path, found in ((INSPECTOR, INSPECTOR.exists()), ("node", shutil.which("node"))) if not found]
    if not missing:
        return
    message = f"MCP Inspector CLI not usable, missing: {', '.join(missing)}; run npm ci --prefix tests/node"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def inspect(home: Path, *args: str) -> dict[str, Any]:
    """Run the Inspector CLI with JSON output and return what it printed; fail on a non-zero exit."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TASKSTORE_", "MCP_"))}
    env["HOME"] = str(home)  # it may keep a catalog and OAuth state under HOME
    result = subprocess.run(
        [str(INSPECTOR), "--cli", "--format", "json", *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=INSPECTOR_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return json.loads(result.stdout)


def tool_names(output: dict[str, Any]) -> set[str]:
    return {tool["name"] for tool in output["result"]["tools"]}


def call(tool: str, arguments: dict[str, Any]) -> tuple[str, ...]:
    return ("--method", "tools/call", "--tool-name", tool, "--tool-args-json", json.dumps(arguments))


# --- stdio ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stdio_target(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, ...]]:
    """A HOME for the Inspector and the arguments that make it launch our server over stdio."""
    root = tmp_path_factory.mktemp("inspector-stdio")
    data_dir = root / "data"
    token = issue_dev_token(data_dir, "inspector-user")
    target = (
        "-e", f"TASKSTORE_TOKEN={token}", "-e", f"TASKSTORE_DATA_DIR={data_dir}",
        "--", sys.executable, "-m", "server", "serve",
    )
    return root, target


def test_inspector_lists_the_tools_over_stdio(stdio_target):
    home, target = stdio_target
    output = inspect(home, "--method", "tools/list", *target)
    assert tool_names(output) == EXPECTED_TOOLS


def test_inspector_creates_then_lists_a_task_over_stdio(stdio_target):
    home, target = stdio_target
    created = inspect(home, *call("create_task", {"title": "From the Inspector over stdio"}), *target)
    listed = inspect(home, *call("list_tasks", {}), *target)
    assert created["result"]["isError"] is False
    assert created["result"]["structuredContent"]["title"] == "From the Inspector over stdio"
    assert created["result"]["structuredContent"]["id"] in [task["id"] for task in listed["result"]["structuredContent"]["tasks"]]


# --- streamable HTTP -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, HttpServer, tuple[str, ...]]]:
    root = tmp_path_factory.mktemp("inspector-http")
    data_dir = root / "data"
    data_dir.mkdir()
    token = issue_dev_token(data_dir, "inspector-user")
    with http_server(data_dir, None) as server:
        target = ("--transport", "http", "--server-url", server.url, "--header", f"Authorization: Bearer {token}")
        yield root, server, target


def test_inspector_lists_the_tools_over_http(http_target):
    home, _, target = http_target
    output = inspect(home, "--method", "tools/list", *target)
    assert tool_names(output) == EXPECTED_TOOLS


def test_inspector_creates_then_lists_a_task_over_http(http_target):
    home, _, target = http_target
    created = inspect(home, *call("create_task", {"title": "From the Inspector over HTTP"}), *target)
    listed = inspect(home, *call("list_tasks", {}), *target)
    assert created["result"]["isError"] is False
    assert created["result"]["structuredContent"]["title"] == "From the Inspector over HTTP"
    assert created["result"]["structuredContent"]["id"] in [task["id"] for task in listed["result"]["structuredContent"]["tasks"]]
