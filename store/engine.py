"""Database URLs and engines.

``DATABASE_URL`` may be any URL a user pastes: ``postgres://``, ``postgresql://``,
``postgresql+asyncpg://`` (including Neon's ``?sslmode=require&channel_binding=require`` and
``-pooler`` hosts) or ``sqlite:///path``. ``database_config`` turns it into an async
SQLAlchemy URL plus the asyncpg connect arguments that libpq's query parameters meant.
Without ``DATABASE_URL`` the store uses a SQLite file in the user's data directory.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import platformdirs
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from store.errors import ConfigurationError

logger = logging.getLogger(__name__)

APP_NAME = "taskstore"
DATA_DIR_ENV = "TASKSTORE_DATA_DIR"
DATABASE_URL_ENV = "DATABASE_URL"
POOLER_ENV = "DATABASE_POOLER"

# Neon suspends an idle compute after 5 minutes and its connections die with it, so pooled
# connections are replaced well before that.
POOL_RECYCLE_SECONDS = 240
CONNECT_TIMEOUT_SECONDS = 10.0
SQLITE_BUSY_TIMEOUT_MS = 5_000

_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}


@dataclass(frozen=True)
class DatabaseConfig:
    """An async SQLAlchemy URL and the keyword arguments its engine needs."""

    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)
    pooler: bool = False

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    def describe(self) -> str:
        """Name the database for logs and errors: host and database, never user or password."""
        if self.backend == "sqlite":
            return f"sqlite file {self.url.database}"
        host = self.url.host or "localhost"
        port = f":{self.url.port}" if self.url.port else ""
        return f"postgresql database {self.url.database!r} on {host}{port}"


def default_data_dir() -> Path:
    """Return the data directory: ``TASKSTORE_DATA_DIR`` or the platform's user data directory."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)).resolve()


def ensure_data_dir(path: Path) -> Path:
    """Create the data directory when missing and check that it is writable."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise ConfigurationError(
            f"cannot create data directory {path}: {error.strerror}; "
            f"set {DATA_DIR_ENV} or {DATABASE_URL_ENV} to a writable location"
        ) from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"data directory {path} is not writable; set {DATA_DIR_ENV} or {DATABASE_URL_ENV} to a writable location"
        )
    return path


def default_database_url() -> str:
    """Return the URL of the embedded SQLite file, creating its directory."""
    directory = ensure_data_dir(default_data_dir())
    return f"sqlite+aiosqlite:///{directory / 'taskstore.db'}"


def database_config(raw_url: str | None = None) -> DatabaseConfig:
    """Parse ``raw_url`` (default: ``DATABASE_URL``, else the embedded SQLite file)."""
    if raw_url is None:
        raw_url = os.environ.get(DATABASE_URL_ENV) or None
    if raw_url is None:
        raw_url = default_database_url()
    try:
        url = make_url(raw_url.strip())
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            f"{DATABASE_URL_ENV} is not a valid database URL; expected postgresql://user:password@host/db or sqlite:///path"
        ) from None

    if url.drivername in _SQLITE_SCHEMES:
        return _sqlite_config(url)
    if url.drivername in _POSTGRES_SCHEMES:
        return _postgres_config(url)
    raise ConfigurationError(
        f"unsupported database URL scheme {url.drivername!r}; use postgresql:// (or postgres://) or sqlite:///"
    )


def _sqlite_config(url: URL) -> DatabaseConfig:
    database = url.database
    if not database or database == ":memory:":
        raise ConfigurationError(
            "an in-memory SQLite database is not shared between connections; give a file path"
        )
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = path.resolve()
    ensure_data_dir(path.parent)
    return DatabaseConfig(url=url.set(drivername="sqlite+aiosqlite", database=str(path), query={}))


def _postgres_config(url: URL) -> DatabaseConfig:
    query = {key: (value[-1] if isinstance(value, tuple) else value) for key, value in url.query.items()}
    connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    server_settings: dict[str, str] = {}

    sslmode = query.pop("sslmode", None)
    sslrootcert = query.pop("sslrootcert", None)
    channel_binding = query.pop("channel_binding", None)
    if channel_binding not in (None, "disable", "prefer", "require"):
        raise ConfigurationError(f"invalid channel_binding {channel_binding!r}; use disable, prefer or require")
    if sslrootcert == "system":
        # As in libpq 16: the system store implies verify-full, and a weaker mode is an error.
        if sslmode is None:
            sslmode = "verify-full"
        elif sslmode != "verify-full":
            raise ConfigurationError(f"sslmode={sslmode} cannot be used with sslrootcert=system; use sslmode=verify-full")
    if channel_binding == "require":
        # Channel binding exists only over TLS, so libpq never connects without it here.
        if sslmode == "disable":
            raise ConfigurationError("channel_binding=require needs TLS; remove sslmode=disable")
        if sslmode is None or sslmode in ("allow", "prefer"):
            sslmode = "require"
    if sslmode is not None or sslrootcert is not None:
        connect_args["ssl"] = ssl_argument("prefer" if sslmode is None else sslmode, sslrootcert)
    if channel_binding == "require":
        # NOTE: asyncpg 0.32 authenticates with SCRAM-SHA-256 but not its channel-bound -PLUS
        # variant; TLS is still required as set above.
        logger.info("channel_binding=require is not supported by asyncpg and is ignored; TLS is still required")

    if "connect_timeout" in query:
        connect_args["timeout"] = _positive_number("connect_timeout", query.pop("connect_timeout"))
    if "application_name" in query:
        server_settings["application_name"] = query.pop("application_name")
    if "options" in query:
        server_settings.update(_parse_options(query.pop("options")))
    if "target_session_attrs" in query:
        connect_args["target_session_attrs"] = query.pop("target_session_attrs")
    pooler_flag = query.pop("pgbouncer", None)

    # The SQLAlchemy asyncpg dialect reads these two from the URL itself.
    passthrough = {key: query.pop(key) for key in ("prepared_statement_cache_size",) if key in query}
    if query:
        names = ", ".join(sorted(query))
        raise ConfigurationError(f"unsupported database URL parameter(s): {names}")

    host = url.host or ""
    pooler = "-pooler." in host or pooler_flag in ("true", "1") or os.environ.get(POOLER_ENV, "") in ("1", "true")
    if pooler:
        # PgBouncer in transaction mode hands each transaction to any server connection, where
        # a statement prepared on another connection does not exist.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
        passthrough["prepared_statement_cache_size"] = "0"
    if server_settings:
        connect_args["server_settings"] = server_settings

    async_url = url.set(drivername="postgresql+asyncpg", query=passthrough)
    return DatabaseConfig(url=async_url, connect_args=connect_args, pooler=pooler)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"


def _positive_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise ConfigurationError(f"invalid {name} {value!r}; expected a positive number of seconds")
    return number


def _parse_options(options: str) -> dict[str, str]:
    """Translate libpq ``options=-c key=value ...`` into asyncpg server settings."""
    settings: dict[str, str] = {}
    parts = options.split()
    index = 0
    while index < len(parts):
        part = parts[index]
        if part == "-c" and index + 1 < len(parts):
            part = parts[index + 1]
            index += 1
        elif part.startswith("-c"):
            part = part[2:]
        key, separator, value = part.partition("=")
        if not separator or not key:
            raise ConfigurationError("unsupported options parameter; only '-c name=value' settings are accepted")
        settings[key.replace("-", "_") if key.startswith("-") else key] = value
        index += 1
    # Neon's endpoint hint serves clients without TLS SNI; asyncpg sends SNI, and Neon rejects
    # unknown server settings, so it is not forwarded.
    settings.pop("endpoint", None)
    return settings


def ssl_argument(sslmode: str, sslrootcert: str | None = None) -> ssl.SSLContext | str | bool:
    """Build asyncpg's ``ssl`` argument with libpq's meaning of ``sslmode``.

    ``verify-ca`` and ``verify-full`` check the certificate against ``sslrootcert`` (a file, or
    ``system`` for the operating system's store), or the system store when it is absent.
    ``verify-full`` also checks the host name. ``require`` encrypts without verification, as in
    libpq, unless ``sslrootcert`` is given, in which case it verifies the chain like libpq does.
    """
    if sslmode not in _SSL_MODES:
        raise ConfigurationError(f"invalid sslmode {sslmode!r}; use one of {', '.join(_SSL_MODES)}")
    if sslmode == "disable":
        return False
    if sslmode in ("allow", "prefer"):
        return sslmode

    verify = sslmode in ("verify-ca", "verify-full") or sslrootcert is not None
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    if sslrootcert in (None, "system"):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.path.expanduser(sslrootcert))
        except (OSError, ssl.SSLError) as error:
            raise ConfigurationError(f"cannot load sslrootcert {sslrootcert!r}: {error}") from None
    context.check_hostname = sslmode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def create_engine(config: DatabaseConfig, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """Create the async engine for ``config``; make it once per process and dispose it at exit."""
    if config.backend == "sqlite":
        engine = create_async_engine(
            config.url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_pre_ping=False,
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        return engine

    return create_async_engine(
        config.url,
        connect_args=config.connect_args,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # A ping at every checkout cost three round trips per call. Instead, Database.transaction
        # retries a call whose pooled connection turns out dead, which costs nothing on a live one.
        pool_pre_ping=False,
        pool_recycle=POOL_RECYCLE_SECONDS,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
    )


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # SQLite's built-in lower() folds ASCII only. The search filter compares lower() of both
    # sides, so without this "ärger" would not find "ÄRGER" on SQLite but would on PostgreSQL.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
