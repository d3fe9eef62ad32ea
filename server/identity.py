"""The user of the current call, from the verified access token and nowhere else."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver.exceptions import ToolError


@dataclass(frozen=True)
class Identity:
    """Reads the caller from the request's access token.

    ``write_scope``: a token that carries scopes but not this one may only call read-only
    tools. An empty string turns scope checks off.
    """

    write_scope: str = "tasks:write"

    def user_id(self, *, write: bool) -> str:
        """Return the verified user id, or raise a ToolError that explains how to get a valid token."""
        token = get_access_token()
        if token is None or not token.subject:
            raise ToolError("Not authenticated: this call carries no verified access token.")
        if token.expires_at is not None and token.expires_at <= time.time():
            raise ToolError("The access token has expired; renew the token and restart the client with the new one.")
        if write and not self.may_write(token.scopes):
            raise ToolError(f"This token is read-only: it lacks the {self.write_scope!r} scope, so it cannot change data.")
        return token.subject

    def may_write(self, scopes: list[str]) -> bool:
        return not self.write_scope or not scopes or self.write_scope in scopes
