"""Per-process services: the engine, the repositories and the schema check at start."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text

from store import ConversationRepository, Database, DatabaseConfig, DatabaseUnavailable, TaskRepository, create_engine
from store import migrate
from store.errors import is_unavailable

logger = logging.getLogger(__name__)


class SchemaNotReady(Exception):
    """The database schema is not at the migrations' head and the server may not migrate it."""


@dataclass
class Services:
    database: Database
    tasks: TaskRepository
    conversations: ConversationRepository
    config: DatabaseConfig


async def schema_status(database: Database) -> tuple[str | None, str | None]:
    """Return (current revision, head revision)."""
    return await migrate.current_revision(database.engine), migrate.head_revision()


def schema_is_ahead(current: str | None) -> bool:
    """Tell whether the database was migrated by a newer release than this one.

    During a rolling deploy the migration runs once, before the new replicas start, while old
    replicas still serve: their code does not know the new revision. Migrations that keep the
    previous release working (add, then remove in a later release) make that safe, so old
    replicas keep serving instead of all becoming unready at once.
    """
    return current is not None and not migrate.is_known_revision(current)


async def prepare_schema(database: Database, config: DatabaseConfig, auto_migrate: bool | None) -> None:
    """Upgrade to head when allowed (default: only on SQLite), else refuse a schema behind head."""
    if auto_migrate is None:
        auto_migrate = config.backend == "sqlite"
    current, head = await schema_status(database)
    if current == head:
        return
    if schema_is_ahead(current):
        logger.warning(
            "the schema of %s is at revision %s, newer than this version's %s; serving anyway",
            config.describe(), current, head,
        )
        return
    if auto_migrate:
        logger.info("upgrading schema of %s from %s to %s", config.describe(), current or "empty", head)
        await migrate.upgrade(database.engine)
        return
    raise SchemaNotReady(
        f"the schema of {config.describe()} is at revision {current or 'none'}, not {head}; "
        "run `taskstore db upgrade` (or start with --auto-migrate)"
    )


async def warn_if_bypassing_row_security(database: Database) -> None:
    """Log a warning when the PostgreSQL role ignores row-level security (a superuser, or BYPASSRLS)."""
    if not database.is_postgres:
        return
    query = text("SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
    async with database.engine.connect() as connection:
        row = (await connection.execute(query)).one_or_none()
    if row is not None and row[1]:
        logger.warning(
            "connected as role %r, which bypasses row-level security: only the application's own checks "
            "isolate users; serve with a non-superuser application role (docs/security.md)",
            row[0],
        )


@asynccontextmanager
async def open_services(
    config: DatabaseConfig,
    *,
    auto_migrate: bool | None = None,
    pool_size: int = 10,
    max_overflow: int = 10,
    require_database: bool = True,
) -> AsyncIterator[Services]:
    """Make the engine once, check or upgrade the schema, and dispose the engine on exit.

    With ``require_database=False`` an unreachable database is logged instead of raised, so a
    stdio client still completes its handshake and tools report the database as unavailable
    until it comes back.
    """
    database = Database(create_engine(config, pool_size=pool_size, max_overflow=max_overflow))
    try:
        try:
            await prepare_schema(database, config, auto_migrate)
            await warn_if_bypassing_row_security(database)
        except SchemaNotReady:
            raise
        except Exception as error:
            if not is_unavailable(error) or require_database:
                raise
            logger.warning("%s is unavailable at start (%s); tools will retry on each call", config.describe(), type(error).__name__)
        yield Services(database, TaskRepository(database), ConversationRepository(database), config)
    finally:
        await database.dispose()
        logger.info("closed the connection pool of %s", config.describe())


__all__ = ["DatabaseUnavailable", "SchemaNotReady", "Services", "open_services", "prepare_schema", "schema_status"]
