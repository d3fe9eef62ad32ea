"""The MCP floor: an MCPServer with an ``async def noop() -> str`` tool behind the product's HTTP stack.

It is served exactly as ``taskstore serve --transport streamable-http`` serves the product
(``server.http.build_http_app`` with the same bearer guard and development-issuer JWT check,
uvicorn with the same options, INFO logging to stderr). A list_tasks call and a noop call
therefore pay the same transport and authentication cost, and what differs is the tool, the
store and TaskstoreServer's per-call argument check and log line. A second tool,
``page_of_tasks``, returns a fixed list_tasks page of 20 tasks: the cost of that payload
without the database.

Usage: python -m bench.noop_server --port PORT [--stateless] [--json-response]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from server.schemas import Task, TaskList
from store import Priority


def sample_page() -> TaskList:
    """Build a list_tasks result of 20 tasks shaped like the benchmark data: the payload floor."""
    created = datetime(2026, 1, 1, tzinfo=UTC)
    tasks = [
        Task(
            id=1000 + index,
            title=f"Review budget #{1000 + index}",
            description="review budget " * 8 if index % 5 else None,
            completed=False,
            completed_at=None,
            priority=(None, Priority.LOW, Priority.MEDIUM, Priority.HIGH)[index % 4],
            due_at=created + timedelta(days=7) if index % 2 else None,
            version=1 + index % 3,
            created_at=created + timedelta(minutes=index),
            updated_at=created + timedelta(minutes=index, hours=1),
        )
        for index in range(20)
    ]
    return TaskList(tasks=tasks, count=20, has_more=True, next_cursor="WyJ0IiwxMDE5XQ", note=None)


async def serve(port: int, stateless: bool, json_response: bool) -> None:
    import uvicorn
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    from server.auth.factory import build_verifier
    from server.cli import _data_dir
    from server.http import build_http_app
    from server.settings import Settings
    from server.tools import ToolContext

    settings = Settings()
    resource_url = f"http://127.0.0.1:{port}/mcp"
    context = ToolContext()
    verifier = build_verifier(settings, Path(_data_dir(settings)), context)
    auth = AuthSettings(issuer_url=resource_url, resource_server_url=resource_url, validate_token_resource=False)
    server = MCPServer("noop", token_verifier=verifier, auth=auth, log_level=settings.log_level.upper())  # type: ignore[arg-type]

    @server.tool()
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    page = sample_page()

    @server.tool()
    async def page_of_tasks() -> TaskList:
        """Return the same list_tasks page of 20 tasks every time, without a database."""
        return page

    app = build_http_app(
        server=server,
        context=context,
        verifier=verifier,
        transport="streamable-http",
        resource_url=resource_url,
        host="127.0.0.1",
        json_response=json_response,
        stateless=stateless,
        write_tools=frozenset(),
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    await uvicorn.Server(config).serve()


def main() -> None:
    from server.cli import configure_logging
    from server.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bench.noop_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--json-response", action="store_true")
    args = parser.parse_args()
    configure_logging(Settings().log_level)
    anyio.run(serve, args.port, args.stateless, args.json_response)


if __name__ == "__main__":
    main()
