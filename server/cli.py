"""The ``taskstore`` command: serve, db, token."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError
from pydantic_settings import SettingsError

from server.settings import Settings
from store import ConfigurationError, DatabaseConfig, StoreError, database_config
from store.engine import default_data_dir, ensure_data_dir

logger = logging.getLogger("taskstore")

TRANSPORTS = ("stdio", "streamable-http", "sse")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A unit is required: "30" would be 30 seconds to one reader and 30 days to another, and the
# purge cannot be undone. 100 years is far beyond any token lifetime or retention.
MAX_DURATION_SECONDS = 100 * 365 * 86400


class CommandError(Exception):
    """A command failed in a way the user can fix; the message is printed without a traceback."""


def parse_duration(value: str) -> int:
    """Parse '90s', '15m', '1h' or '30d' into seconds."""
    match = _DURATION.match(value)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}; use a positive number with a unit s, m, h or d, such as 1h or 30d"
        )
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}; the maximum is 36500d")
    return seconds


def parse_port(value: str) -> int:
    """Parse a TCP port number, 0 to 65535."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}; use a number from 0 to 65535")
    return port


def configure_logging(level: str) -> None:
    """Send every log record to stderr: in stdio mode stdout carries the protocol alone."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # These libraries log SQL with its parameters at DEBUG or INFO; keep user data out of logs.
    for noisy in ("sqlalchemy", "aiosqlite", "asyncpg", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _strip_bearer(token: str) -> str:
    """Accept a token pasted with its HTTP scheme, as in 'Bearer eyJ...'."""
    token = token.strip()
    scheme, _, rest = token.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else token


def _redact(text: str, config: DatabaseConfig) -> str:
    password = config.url.password
    return text.replace(str(password), "***") if password else text


def _database_error(error: Exception, config: DatabaseConfig) -> CommandError | None:
    """Return a one-line CommandError for a connection or driver error, else None."""
    if isinstance(error, StoreError):
        # The store wraps driver errors (the purge does); the driver's reason is the useful part.
        cause = error.__cause__
        found = _database_error(cause, config) if isinstance(cause, Exception) else None
        return found or CommandError(f"{config.describe()}: {error}")
    if isinstance(error, (OSError, TimeoutError)):
        return CommandError(f"cannot connect to {config.describe()}: {_redact(str(error), config)}")
    if type(error).__module__.startswith(("asyncpg", "sqlalchemy")):
        detail = _redact(str(getattr(error, "orig", None) or error), config).splitlines()[0]
        return CommandError(f"cannot use {config.describe()}: {detail}")
    return None


def _database(settings: Settings) -> DatabaseConfig:
    url = settings.database_url.get_secret_value() if settings.database_url else None
    return database_config(url)


def _data_dir(settings: Settings) -> Path:
    path = Path(settings.data_dir).expanduser().resolve() if settings.data_dir else default_data_dir()
    return ensure_data_dir(path)


# --- serve ---------------------------------------------------------------------------------------


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.auth.factory import AuthConfigurationError

    if args.transport == "stdio":
        http_only = [flag for flag, value in (("--host", args.host), ("--port", args.port)) if value is not None]
        http_only += [flag for flag, value in (("--stateless", args.stateless), ("--json-response", args.json_response)) if value]
        if http_only:
            raise CommandError(
                f"{', '.join(http_only)} applies to HTTP only; add --transport streamable-http (or sse)"
            )
    args.host = args.host or "127.0.0.1"
    args.port = 8000 if args.port is None else args.port
    config = _database(settings)
    data_dir = _data_dir(settings)
    try:
        if args.transport == "stdio":
            anyio.run(_serve_stdio, settings, config, data_dir)
        else:
            anyio.run(_serve_http, args, settings, config, data_dir)
    except AuthConfigurationError as error:
        raise CommandError(str(error)) from None
    return 0


@asynccontextmanager
async def _services(settings: Settings, config: DatabaseConfig, *, require_database: bool):  # type: ignore[no-untyped-def]
    from server.services import SchemaNotReady, open_services

    try:
        async with open_services(
            config,
            auto_migrate=settings.auto_migrate,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            require_database=require_database,
        ) as services:
            yield services
    except SchemaNotReady as error:
        raise CommandError(str(error)) from None
    except Exception as error:
        command_error = _database_error(error, config)
        if command_error is None:
            raise
        raise command_error from None


async def _serve_stdio(settings: Settings, config: DatabaseConfig, data_dir: Path) -> None:
    from mcp.server.auth.middleware.auth_context import auth_context_var
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

    from mcp.server.auth.provider import AccessToken

    from server.app import build_server
    from server.auth.errors import TokenRejected
    from server.auth.factory import build_verifier
    from server.auth.jwt import looks_like_jwt
    from server.identity import Identity
    from server.tools import ToolContext

    if settings.token is None or not settings.token.get_secret_value().strip():
        raise CommandError(
            "TASKSTORE_TOKEN is not set; stdio needs the user's access token "
            "(for a local try: TASKSTORE_TOKEN=$(taskstore token issue --user you))"
        )
    context = ToolContext(identity=Identity(write_scope=settings.write_scope))
    verifier = build_verifier(settings, data_dir, context)
    token = _strip_bearer(settings.token.get_secret_value())

    async def verify() -> AccessToken:
        try:
            return await verifier.check(token)
        except TokenRejected as rejection:
            if rejection.status >= 500:
                raise CommandError(f"cannot check TASKSTORE_TOKEN now: {rejection.reason}") from None
            raise CommandError(f"TASKSTORE_TOKEN was rejected: {rejection.reason}; renew the token") from None

    # A JWT needs no database, so a bad one is rejected before any file or schema is made.
    access_token = await verify() if looks_like_jwt(token) else None

    # The database may be down: the handshake still completes and tools return "unavailable".
    async with _services(settings, config, require_database=False) as services:
        context.services = services
        if access_token is None:
            access_token = await verify()
        auth_context_var.set(AuthenticatedUser(access_token))
        server = build_server(context, log_level=settings.log_level)
        logger.info("serving stdio for one user on %s", config.describe())
        await server.run_stdio_async()


async def _serve_http(args: argparse.Namespace, settings: Settings, config: DatabaseConfig, data_dir: Path) -> None:
    import uvicorn
    from mcp.server.auth.settings import AuthSettings

    from server.app import build_server, write_tools
    from server.auth.factory import build_verifier
    from server.http import build_http_app
    from server.identity import Identity
    from server.tools import ToolContext

    path = "/sse" if args.transport == "sse" else "/mcp"
    resource_url = settings.resource_url or f"http://{args.host}:{args.port}{path}"
    # OAuth access tokens are checked against this URL (their aud), also when it was not configured.
    settings = settings.model_copy(update={"resource_url": resource_url})
    context = ToolContext(identity=Identity(write_scope=settings.write_scope))
    verifier = build_verifier(settings, data_dir, context)
    # RFC 9728 metadata names the authorization server that issues tokens for this resource.
    # The development issuer is not one (it has no authorize or token endpoint), so without
    # Better Auth no metadata is published and clients are not sent to look for one.
    if settings.better_auth_url:
        from server.auth.better_auth import auth_base_url

        issuer_url = settings.oauth_issuer or auth_base_url(settings.better_auth_url)
        auth = AuthSettings(issuer_url=issuer_url, resource_server_url=resource_url, validate_token_resource=False)
    else:
        auth = AuthSettings(issuer_url=resource_url, resource_server_url=None)

    async with _services(settings, config, require_database=True) as services:
        context.services = services
        server = build_server(context, token_verifier=verifier, auth=auth, log_level=settings.log_level)
        app = build_http_app(
            server=server,
            context=context,
            verifier=verifier,
            transport=args.transport,
            resource_url=resource_url,
            host=args.host,
            json_response=args.json_response,
            stateless=args.stateless,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins,
            write_tools=write_tools(server),
            resource_metadata=auth.resource_server_url is not None,
        )
        uvicorn_config = uvicorn.Config(
            app, host=args.host, port=args.port, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
        )
        await uvicorn.Server(uvicorn_config).serve()


# --- db ------------------------------------------------------------------------------------------


def db(args: argparse.Namespace, settings: Settings) -> int:
    config = _database(settings)
    return anyio.run(_db, args, settings, config)


async def _db(args: argparse.Namespace, settings: Settings, config: DatabaseConfig) -> int:
    from alembic.util import AutogenerateDiffsDetected
    from alembic.util import CommandError as MigrationError

    from store import create_engine, migrate

    engine = create_engine(config, pool_size=1, max_overflow=0)
    try:
        if args.db_command == "upgrade":
            await migrate.upgrade(engine, args.revision)
            print(f"{config.describe()} is at revision {await migrate.current_revision(engine)}")
        elif args.db_command == "downgrade":
            await migrate.downgrade(engine, args.revision)
            print(f"{config.describe()} is at revision {await migrate.current_revision(engine) or 'base (empty)'}")
        elif args.db_command == "current":
            current = await migrate.current_revision(engine)
            head = migrate.head_revision()
            state = "at head" if current == head else f"behind head {head}"
            print(f"{current or 'none'} ({state})")
            return 0 if current == head else 1
        elif args.db_command == "check":
            try:
                await migrate.check(engine)
            except AutogenerateDiffsDetected as error:
                print(f"the models and the migrations differ: {error}", file=sys.stderr)
                return 1
            print("no differences between the models and the migrations")
        elif args.db_command == "purge":
            from store.retention import purge_deleted

            removed = await purge_deleted(engine, older_than_seconds=args.older_than, batch_size=args.batch_size)
            print(f"removed {removed.tasks} tasks, {removed.conversations} conversations and {removed.messages} messages")
        return 0
    except MigrationError as error:  # such as an unknown revision
        raise CommandError(f"cannot migrate {config.describe()}: {error}") from None
    except Exception as error:
        command_error = _database_error(error, config)
        if command_error is None:
            raise
        raise command_error from None
    finally:
        await engine.dispose()


# --- token ---------------------------------------------------------------------------------------


def token(args: argparse.Namespace, settings: Settings) -> int:
    from server.auth.dev_issuer import DevIssuer

    issuer = DevIssuer.load_or_create(_data_dir(settings))
    scopes = tuple(args.scope) if args.scope else ("tasks:read", "tasks:write")
    if any(not scope.strip() or " " in scope for scope in scopes):
        raise CommandError("invalid --scope: a scope is one non-empty word, such as tasks:read")
    print(issuer.issue(args.user, args.ttl, scopes))
    return 0


# --- parser --------------------------------------------------------------------------------------


_LOG_LEVEL_OPTION: dict[str, Any] = {
    "choices": ["DEBUG", "INFO", "WARNING", "ERROR"],
    "type": str.upper,
    "help": "Level of the log written to stderr (default: TASKSTORE_LOG_LEVEL or INFO).",
}


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a value given before the subcommand when none is given after it.
    parser.add_argument("--log-level", default=argparse.SUPPRESS, **_LOG_LEVEL_OPTION)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskstore",
        description="MCP server for an agent's todo tasks and chat history. The database URL comes from "
        "DATABASE_URL (default: a SQLite file in the data directory).",
    )
    parser.add_argument("--log-level", default=None, **_LOG_LEVEL_OPTION)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser(
        "serve",
        help="Run the MCP server.",
        description="Run the MCP server.",
        epilog="Tokens: over stdio from TASKSTORE_TOKEN, checked once at start; over HTTP from each request's "
        "Authorization: Bearer header. Without BETTER_AUTH_URL the local development issuer "
        "(`taskstore token issue`) signs them. With BETTER_AUTH_URL the server accepts Better Auth JWTs, "
        "MCP OAuth access tokens and session tokens instead; see docs/auth.md for the settings.",
    )
    serve_parser.add_argument(
        "--transport", choices=TRANSPORTS, default="stdio", help="Protocol transport (default: stdio)."
    )
    _add_log_level(serve_parser)
    serve_parser.add_argument(
        "--host", default=None, help="HTTP interface to bind (default: 127.0.0.1); HTTP transports only."
    )
    serve_parser.add_argument(
        "--port", type=parse_port, default=None, help="HTTP port (default: 8000); HTTP transports only."
    )
    serve_parser.add_argument(
        "--stateless",
        action="store_true",
        help="Streamable HTTP without server-side sessions, so any replica can serve any request.",
    )
    serve_parser.add_argument(
        "--json-response", action="store_true", help="Answer streamable HTTP requests with JSON instead of SSE streams."
    )
    migrate_group = serve_parser.add_mutually_exclusive_group()
    migrate_group.add_argument(
        "--auto-migrate",
        dest="auto_migrate",
        action="store_const",
        const=True,
        default=None,
        help="Upgrade the schema to head at start (default: only on the embedded SQLite file).",
    )
    migrate_group.add_argument(
        "--no-auto-migrate", dest="auto_migrate", action="store_const", const=False, help="Never migrate at start."
    )
    serve_parser.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="HOST[:PORT]",
        help="Host header to accept behind a proxy, such as tasks.example.com:* (repeatable).",
    )
    serve_parser.set_defaults(handler=serve)

    db_parser = commands.add_parser("db", help="Manage the database schema.", description="Manage the database schema.")
    _add_log_level(db_parser)
    db_commands = db_parser.add_subparsers(dest="db_command", required=True)
    upgrade_parser = db_commands.add_parser("upgrade", help="Upgrade the schema (default: to head).")
    upgrade_parser.add_argument("revision", nargs="?", default="head", help="Target revision (default: head).")
    downgrade_parser = db_commands.add_parser("downgrade", help="Downgrade the schema to a revision.")
    downgrade_parser.add_argument("revision", help="Target revision, such as -1 or base (drops every table).")
    db_commands.add_parser("current", help="Print the schema revision; exit 1 when it is behind head.")
    db_commands.add_parser("check", help="Exit 1 when the models and the migrations differ.")
    purge_parser = db_commands.add_parser(
        "purge", help="Remove soft-deleted tasks and conversations (with their messages) for good."
    )
    purge_parser.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="Remove what was deleted longer ago than this, such as 30d (units: s, m, h, d).",
    )
    purge_parser.add_argument(
        "--batch-size", type=int, default=1000, help="Rows removed per transaction (default: 1000)."
    )
    db_parser.set_defaults(handler=db)

    token_parser = commands.add_parser(
        "token", help="Tokens of the local development issuer.", description="Tokens of the local development issuer."
    )
    token_commands = token_parser.add_subparsers(dest="token_command", required=True)
    issue_parser = token_commands.add_parser(
        "issue", help="Print a JWT signed by the development issuer's key in the data directory."
    )
    issue_parser.add_argument("--user", required=True, help="User id the token acts for (its sub claim).")
    issue_parser.add_argument(
        "--ttl", type=parse_duration, default=3600, help="Lifetime, such as 15m, 1h or 7d (default: 1h)."
    )
    issue_parser.add_argument(
        "--scope", action="append", help="Scope to grant (repeatable; default: tasks:read and tasks:write)."
    )
    token_parser.set_defaults(handler=token)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean shutdown runs (the pool is closed, exit 0)."""


def _on_sigterm(_signal: int, _frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    overrides: dict[str, Any] = {}
    if args.log_level:
        overrides["log_level"] = args.log_level
    if getattr(args, "auto_migrate", None) is not None:
        overrides["auto_migrate"] = args.auto_migrate
    if getattr(args, "allowed_host", None):
        overrides["allowed_hosts"] = args.allowed_host
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "setting"
        variable = name.upper() if name.upper() in ("DATABASE_URL", "BETTER_AUTH_URL", "BETTER_AUTH_SECRET") else f"TASKSTORE_{name.upper()}"
        print(f"taskstore: invalid {variable}: {first['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except SettingsError as error:
        print(f"taskstore: invalid setting: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return args.handler(args, settings)
    except (CommandError, ConfigurationError) as error:
        print(f"taskstore: {error}", file=sys.stderr)
        return 1
    except Terminated:
        # Cleanup already ran. A worker thread may still block reading stdin (stdio transport)
        # and would keep the interpreter alive, so leave without waiting for it.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    except KeyboardInterrupt:
        return 130
