"""MCP tools: each resolves the user, calls one store method and shapes the result."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BeforeValidator

from server.identity import Identity
from server.services import Services

# Names of the arguments the client actually sent, so a tool can tell an omitted argument
# from an explicit null (which clears a field).
provided_arguments: ContextVar[frozenset[str]] = ContextVar("provided_arguments", default=frozenset())



def _reject_bool(value: object) -> object:
    # Pydantic reads JSON true and false as 1 and 0 for an int; as an id that names a real row.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not true or false")
    return value


# Marks an integer argument (ids, versions, page sizes) that must not accept a boolean.
NotBool = BeforeValidator(_reject_bool)


@dataclass
class ToolContext:
    """The services and identity every tool uses; `services` is set once the process has made them."""

    identity: Identity = field(default_factory=Identity)
    services: Services | None = None

    def require_services(self) -> Services:
        if self.services is None:
            raise ToolError("The server is still starting; retry in a moment.")
        return self.services
