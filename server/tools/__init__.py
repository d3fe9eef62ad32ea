"""MCP tools: each resolves the user, calls one store method and shapes the result."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from mcp.server.mcpserver.exceptions import ToolError

from server.identity import Identity
from server.services import Services

# Names of the arguments the client actually sent, so a tool can tell an omitted argument
# from an explicit null (which clears a field).
provided_arguments: ContextVar[frozenset[str]] = ContextVar("provided_arguments", default=frozenset())


@dataclass
class ToolContext:
    """The services and identity every tool uses; `services` is set once the process has made them."""

    identity: Identity = field(default_factory=Identity)
    services: Services | None = None

    def require_services(self) -> Services:
        if self.services is None:
            raise ToolError("The server is still starting; retry in a moment.")
        return self.services
