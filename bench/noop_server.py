"""The MCP floor: an MCPServer with one ``async def noop() -> str`` tool behind the product's HTTP stack.

It is served exactly as ``taskstore serve --transport streamable-http`` serves the product
(``server.http.build_http_app`` with the same bearer guard and development-issuer JWT check,
uvicorn with the same options, INFO logging to stderr), so a list_tasks call and a noop call
pay the same transport and authentication cost; what differs is the tool, the store and
TaskstoreServer's per-call argument check and log line.

Usage: python -m bench.noop_server --port PORT [--stateless] [--json-response]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio


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

    app = build_http_app(
        server=server,
        context=context,
        verifier=verifier,
        transport="streamable-http",
        resource_url=resource_url,
        host="127.0.0.1",
        json_response=json_response,
        stateless=stateless,
        read_only_tools=frozenset({"noop"}),
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
