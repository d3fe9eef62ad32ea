"""The MCP server: the store's tools plus argument checks, error shaping and per-call logging."""

from __future__ import annotations

import inspect
import logging
import time
import types
import typing
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from server.errors import GENERIC_FAILURE
from server.tools import ToolContext, provided_arguments
from server.tools.conversations import register_conversation_tools
from server.tools.tasks import register_task_tools

logger = logging.getLogger(__name__)

SERVER_NAME = "taskstore"
INSTRUCTIONS = (
    "Persistent todo list and chat history of the signed-in user. Use list_tasks to see tasks, "
    "create_task to add one, complete_task to tick it off and delete_task to remove it (restore_task "
    "undoes that). Keep chat history with create_conversation, add_message and get_history. "
    "Ids are integers; lists are paginated with next_cursor."
)


def _admits_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _admits_str(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_admits_str(arg) for arg in typing.get_args(annotation))
    return False


class _TextPreservingFuncMetadata(FuncMetadata):
    """Keep JSON-looking strings as strings.

    The SDK decodes a string argument as JSON when the parameter is not exactly ``str``, to
    help clients that send lists as JSON text. For ``str | None`` parameters that would turn
    a title such as ``[1, 2]`` into a list, so those parameters keep the text.
    """

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        keep = {
            name: value
            for name, value in data.items()
            if name in self.arg_model.model_fields and _admits_str(self.arg_model.model_fields[name].annotation)
        }
        parsed = super().pre_parse_json({name: value for name, value in data.items() if name not in keep})
        return {**parsed, **keep}


def describe_validation_error(error: ValidationError) -> str:
    """Describe the first wrong argument and the rule it broke in one sentence, without its value."""
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "arguments"
    if first["type"] == "missing":
        return f"Missing required argument {location}."
    message = first["msg"].removeprefix("Value error, ")
    return f"Invalid argument {location}: {message}."


class TaskstoreServer(MCPServer):
    """MCPServer that rejects unknown arguments, rewrites validation errors and logs each call."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        started = time.perf_counter()
        outcome = "error"
        try:
            tool = self._tool_manager.get_tool(name)
            if tool is None:
                raise ToolError(f"Unknown tool {name[:100]!r}; list the tools to see what this server offers.")
            known = tool.fn_metadata.arg_model.model_fields
            unknown = sorted(key for key in arguments if key not in known)
            if unknown:
                raise ToolError(
                    f"Unknown argument {unknown[0][:100]!r} for {name}; valid arguments: {', '.join(known)}."
                )
            token = provided_arguments.set(frozenset(arguments))
            try:
                result = await super().call_tool(name, arguments, context)
            except UnexpectedToolError as error:
                # A crash outside the store's error handling: log it whole, tell the model little.
                logger.error("tool %s failed unexpectedly", name, exc_info=error.__cause__ or error)
                raise ToolError(GENERIC_FAILURE.format(tool=name)) from None
            except ToolError as error:
                if isinstance(error.__cause__, ValidationError):
                    outcome = "invalid"
                    raise ToolError(describe_validation_error(error.__cause__)) from None
                # The SDK prefixes "Error executing tool NAME: "; the model reads our sentence alone.
                message = str(error)
                prefix = f"Error executing tool {name}: "
                raise ToolError(message.removeprefix(prefix)) from error.__cause__
            finally:
                provided_arguments.reset(token)
            outcome = "error" if isinstance(result, CallToolResult) and result.is_error else "ok"
            return result
        finally:
            logger.info("tool=%r outcome=%s duration_ms=%.1f", name[:100], outcome, (time.perf_counter() - started) * 1000)


def build_server(
    context: ToolContext,
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    log_level: str = "INFO",
) -> TaskstoreServer:
    """Create the server with every tool registered; ``context.services`` may be set later."""
    server = TaskstoreServer(
        SERVER_NAME,
        title="Taskstore",
        instructions=INSTRUCTIONS,
        version=_version(),
        token_verifier=token_verifier,
        auth=auth,
        log_level=log_level.upper(),  # type: ignore[arg-type]
    )
    register_task_tools(server, context)
    register_conversation_tools(server, context)
    for tool in server._tool_manager.list_tools():
        tool.fn_metadata.__class__ = _TextPreservingFuncMetadata
        # Python before 3.13 keeps a docstring's indentation, which clients would show to the model.
        tool.description = inspect.cleandoc(tool.description)
    return server


def write_tools(server: MCPServer) -> frozenset[str]:
    """Return the names of the tools not annotated read-only: a token without the write scope may not call them."""
    return frozenset(
        tool.name
        for tool in server._tool_manager.list_tools()
        if not (tool.annotations and tool.annotations.read_only_hint)
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("taskstore-mcp")
    except PackageNotFoundError:
        return "0.0.0"
