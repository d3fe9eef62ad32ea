"""Alembic environment for both asyncpg and aiosqlite URLs.

The URL comes from ``DATABASE_URL`` (or the embedded SQLite default) through the store's own
parser, so Neon URLs work here exactly as in the server. Code that already holds a connection
(the server at start, the tests) passes it as ``config.attributes["connection"]``; otherwise
this module makes an engine and runs the migrations on a fresh event loop, in a worker thread
when the calling thread already runs one.
"""

from __future__ import annotations

import asyncio
import logging.config
import threading

from alembic import context
from sqlalchemy.engine import Connection

from store.engine import create_engine, database_config
from store.models import SQLModel

config = context.config
target_metadata = SQLModel.metadata

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine() -> None:
    engine = create_engine(database_config(config.attributes.get("database_url")), pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_in_fresh_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_run_with_new_engine())
        return

    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(_run_with_new_engine())
        except BaseException as error:  # re-raised in the calling thread
            failure.append(error)

    worker = threading.Thread(target=target, name="alembic-migrations")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


if context.is_offline_mode():
    context.configure(
        url=database_config(config.attributes.get("database_url")).url.render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        _run_in_fresh_loop()
