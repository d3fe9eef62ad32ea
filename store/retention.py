"""Retention: remove soft-deleted rows for good once they are older than the retention period."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.conversations import conversation_table, message_table
from store.errors import InvalidInput, translate_database_error
from store.tasks import task_table
from store.types import utc_now

logger = logging.getLogger(__name__)

# Row-level security on PostgreSQL shows the purge only soft-deleted rows, and only with this set.
_PURGE_MODE = text("SELECT set_config('taskstore.maintenance', 'purge', true)")


@dataclass(frozen=True)
class PurgeResult:
    tasks: int = 0
    conversations: int = 0
    messages: int = 0


async def _begin_purge(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(_PURGE_MODE)


async def purge_deleted(engine: AsyncEngine, *, older_than_seconds: int, batch_size: int = 1000) -> PurgeResult:
    """Delete tasks and conversations soft-deleted more than ``older_than_seconds`` ago.

    Each batch of at most ``batch_size`` rows is its own transaction, so a long purge never
    holds locks for long and an interrupted one keeps what it finished. Messages go with
    their conversation (the foreign key cascades).
    """
    if older_than_seconds <= 0:
        raise InvalidInput("older_than", "must be a positive duration")
    if not 1 <= batch_size <= 100_000:
        raise InvalidInput("batch_size", "must be from 1 to 100000")
    cutoff = utc_now() - timedelta(seconds=older_than_seconds)
    tasks = conversations = messages = 0

    with translate_database_error("purge"):
        while True:
            async with engine.begin() as connection:
                await _begin_purge(connection)
                ids = select(task_table.c.id).where(task_table.c.deleted_at < cutoff).limit(batch_size)
                batch = [row[0] for row in (await connection.execute(ids)).all()]
                if batch:
                    await connection.execute(delete(task_table).where(task_table.c.id.in_(batch)))
            tasks += len(batch)
            if len(batch) < batch_size:
                break

        while True:
            async with engine.begin() as connection:
                await _begin_purge(connection)
                ids = select(conversation_table.c.id).where(conversation_table.c.deleted_at < cutoff).limit(batch_size)
                batch = [row[0] for row in (await connection.execute(ids)).all()]
                if batch:
                    count = select(func.count()).select_from(message_table).where(message_table.c.conversation_id.in_(batch))
                    messages += (await connection.execute(count)).scalar_one()
                    await connection.execute(delete(conversation_table).where(conversation_table.c.id.in_(batch)))
            conversations += len(batch)
            if len(batch) < batch_size:
                break

    logger.info("purge removed %d tasks, %d conversations, %d messages", tasks, conversations, messages)
    return PurgeResult(tasks, conversations, messages)
