"""The HTTP transports (streamable HTTP and SSE) with health routes and the bearer-token guard."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from pydantic import AnyHttpUrl
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth.errors import TokenRejected
from server.auth.verifier import ServerTokenVerifier, remember_verified
from server.identity import Identity
from server.services import Services, schema_is_ahead, schema_status
from server.tools import ToolContext

logger = logging.getLogger(__name__)

# The same limit the SDK's transports apply to a request body.
MAX_INSPECTED_BODY = DEFAULT_MAX_REQUEST_BODY_SIZE


def _auth_error(status: int, error: str, description: str, metadata_url: str | None) -> Response:
    # The description may quote parts of an unverified token: keep the header a valid quoted string.
    header_description = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in description)
    parts = [f'error="{error}"', f'error_description="{header_description}"']
    if metadata_url:
        parts.append(f'resource_metadata="{metadata_url}"')
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"WWW-Authenticate": "Bearer " + ", ".join(parts)},
    )


class BearerGuard:
    """Reject requests to the MCP endpoints whose bearer token is missing, invalid or lacks a scope.

    It runs before the SDK's own bearer check so that a 401 names the check that failed
    (expired, wrong audience, unknown key, ...), and so that a token without the write scope
    gets 403 for a tool that changes data. Neither response ever contains the token.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: ServerTokenVerifier,
        identity: Identity,
        write_tools: frozenset[str],
        protected_prefixes: tuple[str, ...],
        metadata_url: str | None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.identity = identity
        self.write_tools = write_tools
        self.protected_prefixes = protected_prefixes
        self.metadata_url = metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.protected_prefixes):
            await self.app(scope, receive, send)
            return

        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            await _auth_error(401, "invalid_token", "missing bearer token", self.metadata_url)(scope, receive, send)
            return
        try:
            access_token = await self.verifier.check(token)
        except TokenRejected as rejection:
            logger.info("HTTP request rejected: %s", rejection.reason)
            await _auth_error(rejection.status, rejection.error, rejection.reason, self.metadata_url)(scope, receive, send)
            return
        remember_verified(token.strip(), access_token)

        if scope["method"] == "POST" and not self.identity.may_write(access_token.scopes):
            body = await _read_body(receive)
            if body is None:
                logger.info("HTTP request rejected: body over %d bytes", MAX_INSPECTED_BODY)
                too_large = JSONResponse({"error": "request body too large"}, status_code=413)
                await too_large(scope, receive, send)
                return
            # Unknown tool names pass on: the server rejects them as unknown, which is the truer error.
            tool = next((name for name in _called_tools(body) if name in self.write_tools), None)
            if tool is not None:
                description = f"tool {tool[:100]} needs the {self.identity.write_scope} scope"
                await _auth_error(403, "insufficient_scope", description, self.metadata_url)(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    """Read the whole request body, or return None once it exceeds ``MAX_INSPECTED_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_INSPECTED_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """Hand the app the body already read, then the real channel, which waits for a disconnect.

    Returning a disconnect at once would make the transport drop its streamed response.
    """
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _called_tools(body: bytes) -> list[str]:
    """Return the tools a JSON-RPC body calls, batches included ('' for a call we cannot name)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return []
    messages = payload if isinstance(payload, list) else [payload]
    names: list[str] = []
    for message in messages:
        if isinstance(message, dict) and message.get("method") == "tools/call":
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            names.append(name if isinstance(name, str) else "")
    return names


def health_routes(context: ToolContext) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        services: Services | None = context.services
        if services is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            async with services.database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            current, head = await schema_status(services.database)
        except Exception as error:  # any failure means not ready; the type is enough for the log
            logger.warning("readiness check failed: %s", type(error).__name__)
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        if current != head and schema_is_ahead(current):
            return JSONResponse({"status": "ready", "schema": current, "note": "schema ahead of this version"})
        if current != head:
            return JSONResponse(
                {"status": "schema behind", "current": current, "head": head}, status_code=503
            )
        return JSONResponse({"status": "ready", "schema": current})

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]


def transport_security(host: str, allowed_hosts: list[str], allowed_origins: list[str]) -> TransportSecuritySettings | None:
    """DNS-rebinding protection: loopback names always, plus the hosts allowed behind a proxy."""
    if not allowed_hosts and host not in ("127.0.0.1", "localhost", "::1"):
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *allowed_hosts]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *allowed_origins]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def build_http_app(
    *,
    server: Any,
    context: ToolContext,
    verifier: ServerTokenVerifier,
    transport: str,
    resource_url: str,
    host: str,
    json_response: bool = False,
    stateless: bool = False,
    allowed_hosts: list[str] | None = None,
    allowed_origins: list[str] | None = None,
    write_tools: frozenset[str] = frozenset(),
    resource_metadata: bool = True,
) -> Starlette:
    """Wrap the SDK's transport app with health routes and the bearer guard.

    ``context.services`` must be set before the app starts: the process makes them once, around
    the whole HTTP server, so SSE connections do not each open an engine.
    """
    security = transport_security(host, allowed_hosts or [], allowed_origins or [])
    if transport == "sse":
        inner = server.sse_app(transport_security=security, host=host)
        protected = ("/sse", "/messages")
        run_sessions = None
    else:
        inner = server.streamable_http_app(
            json_response=json_response, stateless_http=stateless, transport_security=security, host=host
        )
        protected = ("/mcp",)
        run_sessions = server.session_manager.run

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if run_sessions is not None:
                await stack.enter_async_context(run_sessions())
            logger.info("serving %s on %s", transport, resource_url)
            yield
            logger.info("stopping %s server", transport)

    metadata_url = str(build_resource_metadata_url(AnyHttpUrl(resource_url))) if resource_metadata else None
    app = Starlette(routes=[*health_routes(context), Mount("/", app=inner)], lifespan=lifespan)
    app.add_middleware(
        BearerGuard,
        verifier=verifier,
        identity=context.identity,
        write_tools=write_tools,
        protected_prefixes=protected,
        metadata_url=metadata_url,
    )
    return app
