"""The retention purge: soft-deleted rows older than the retention go, everything else stays.

Each test works on a database of its own, because the purge is not per user: it removes every
old deleted row in the database. Age is simulated by moving ``deleted_at`` back with SQL.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import make_url

from store import ConversationRepository, Database, TaskRepository, create_engine, database_config
from store.conversations import conversation_table, message_table
from store.retention import purge_deleted
from store.tasks import task_table
from store.types import utc_now
from tests.conftest import make_migrated_database_url
from tests.support.servers import server_env

RETENTION_DAYS = 30
BATCH_SIZE = 2


@dataclass
class Planted:
    """Ids of what one user was given, by what the purge should do with it."""

    old_tasks: list[int]
    recent_deleted_tasks: list[int]
    active_tasks: list[int]
    old_conversations: list[int]
    old_messages: int
    recent_deleted_conversations: list[int]
    active_conversations: list[int]
    kept_messages: int


@pytest.fixture
async def fresh_url(backend: str, sqlite_dir: Path, request: pytest.FixtureRequest) -> str:
    return await make_migrated_database_url(backend, sqlite_dir, request)


@pytest.fixture
async def fresh_database(fresh_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(database_config(fresh_url)))
    yield database
    await database.dispose()


async def _backdate(database: Database, user: str, table: Any, ids: list[int], days: int) -> None:
    async with database.transaction(user, "backdate") as connection:
        await connection.execute(
            update(table).where(table.c.id.in_(ids)).values(deleted_at=utc_now() - timedelta(days=days))
        )


async def plant(database: Database, user: str) -> Planted:
    """Give ``user`` old and recent deleted rows and active rows, some of them created long ago."""
    tasks, talks = TaskRepository(database), ConversationRepository(database)

    async def new_task(title: str) -> int:
        return (await tasks.create_task(user, {"title": title})).id

    old_tasks = [await new_task(f"old deleted {number}") for number in range(5)]
    recent = [await new_task(f"recent deleted {number}") for number in range(3)]
    active = [await new_task(f"active {number}") for number in range(3)]
    for task_id in old_tasks + recent:
        await tasks.soft_delete_task(user, task_id)
    await _backdate(database, user, task_table, old_tasks, RETENTION_DAYS + 10)
    await _backdate(database, user, task_table, recent, RETENTION_DAYS - 10)

    async def new_conversation(title: str, messages: int) -> int:
        conversation = await talks.create_conversation(user, title)
        for number in range(messages):
            await talks.add_message(user, conversation.id, "user", f"{title} message {number}")
        return conversation.id

    old_conversations = [await new_conversation(f"old {number}", number + 1) for number in range(3)]
    recent_conversations = [await new_conversation("recent", 2)]
    active_conversations = [await new_conversation("active", 3)]
    for conversation_id in old_conversations + recent_conversations:
        await talks.soft_delete_conversation(user, conversation_id)
    await _backdate(database, user, conversation_table, old_conversations, RETENTION_DAYS + 1)
    await _backdate(database, user, conversation_table, recent_conversations, RETENTION_DAYS - 1)
    # An active task and conversation created long ago: their age alone must not matter.
    async with database.transaction(user, "age active rows") as connection:
        long_ago = utc_now() - timedelta(days=400)
        await connection.execute(update(task_table).where(task_table.c.id == active[0]).values(created_at=long_ago))
        await connection.execute(
            update(conversation_table)
            .where(conversation_table.c.id == active_conversations[0])
            .values(created_at=long_ago, updated_at=long_ago)
        )
    return Planted(
        old_tasks=old_tasks,
        recent_deleted_tasks=recent,
        active_tasks=active,
        old_conversations=old_conversations,
        old_messages=1 + 2 + 3,
        recent_deleted_conversations=recent_conversations,
        active_conversations=active_conversations,
        kept_messages=2 + 3,
    )


async def remaining(database: Database, user: str) -> tuple[set[int], set[int], int, int]:
    """Return the task ids, conversation ids, messages in those conversations and all messages of ``user``."""
    async with database.transaction(user, "inspect") as connection:
        task_ids = set((await connection.execute(select(task_table.c.id).where(task_table.c.user_id == user))).scalars())
        conversation_ids = set(
            (await connection.execute(select(conversation_table.c.id).where(conversation_table.c.user_id == user))).scalars()
        )
        messages = select(func.count()).select_from(message_table).where(message_table.c.user_id == user)
        total = (await connection.execute(messages)).scalar_one()
        in_conversations = (
            await connection.execute(messages.where(message_table.c.conversation_id.in_(conversation_ids)))
        ).scalar_one()
    return task_ids, conversation_ids, in_conversations, total


def expected_tasks(planted: Planted) -> set[int]:
    return set(planted.recent_deleted_tasks + planted.active_tasks)


def expected_conversations(planted: Planted) -> set[int]:
    return set(planted.recent_deleted_conversations + planted.active_conversations)


async def test_purge_removes_only_old_deleted_rows_in_batches(fresh_database: Database) -> None:
    users = [f"keep-{uuid.uuid4().hex[:8]}", f"keep-{uuid.uuid4().hex[:8]}"]
    planted = [await plant(fresh_database, user) for user in users]
    deletes: list[int] = []

    def count_delete(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(cursor.rowcount)

    event.listen(fresh_database.engine.sync_engine, "after_cursor_execute", count_delete)
    try:
        result = await purge_deleted(
            fresh_database.engine, older_than_seconds=RETENTION_DAYS * 86400, batch_size=BATCH_SIZE
        )
    finally:
        event.remove(fresh_database.engine.sync_engine, "after_cursor_execute", count_delete)

    assert result.tasks == 10
    assert result.conversations == 6
    assert result.messages == 12
    # 10 tasks and 6 conversations in batches of at most 2: at least 5 + 3 separate deletes.
    assert len(deletes) >= 8
    assert max(deletes) <= BATCH_SIZE
    assert sum(deletes) == 16
    for user, mine in zip(users, planted, strict=True):
        task_ids, conversation_ids, in_conversations, total = await remaining(fresh_database, user)
        assert task_ids == expected_tasks(mine)
        assert conversation_ids == expected_conversations(mine)
        assert in_conversations == mine.kept_messages
        # Messages of purged conversations went with them (the foreign key cascades).
        assert total == mine.kept_messages


async def test_purge_of_nothing_old_removes_nothing(fresh_database: Database) -> None:
    user = f"young-{uuid.uuid4().hex[:8]}"
    planted = await plant(fresh_database, user)
    result = await purge_deleted(fresh_database.engine, older_than_seconds=(RETENTION_DAYS + 30) * 86400)
    task_ids, conversation_ids, _, total = await remaining(fresh_database, user)
    assert (result.tasks, result.conversations, result.messages) == (0, 0, 0)
    assert task_ids == set(planted.old_tasks) | expected_tasks(planted)
    assert conversation_ids == set(planted.old_conversations) | expected_conversations(planted)
    assert total == planted.kept_messages + planted.old_messages


async def test_cli_purge_prints_what_it_removed(fresh_url: str, fresh_database: Database, tmp_path: Path) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    planted = await plant(fresh_database, user)
    await fresh_database.dispose()
    finished = subprocess.run(
        [sys.executable, "-m", "server", "db", "purge", "--older-than", f"{RETENTION_DAYS}d", "--batch-size", str(BATCH_SIZE)],
        env=server_env(tmp_path, fresh_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "removed 5 tasks, 3 conversations and 6 messages"
    assert "Traceback" not in finished.stderr
    task_ids, conversation_ids, in_conversations, total = await remaining(fresh_database, user)
    assert task_ids == expected_tasks(planted)
    assert conversation_ids == expected_conversations(planted)
    assert in_conversations == planted.kept_messages
    assert total == planted.kept_messages


@pytest.mark.parametrize("duration", ["0d", "thirty days", "-5d"])
def test_cli_purge_rejects_bad_duration(tmp_path: Path, duration: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "server", "db", "purge", f"--older-than={duration}"],
        env=server_env(tmp_path, f"sqlite:///{tmp_path / 'never-created.db'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert "invalid duration" in finished.stderr
    assert not (tmp_path / "never-created.db").exists()


# Row-level security and roles exist on PostgreSQL only.
@pytest.mark.parametrize("backend", ["postgres"])
async def test_purge_as_application_role(backend: str, fresh_url: str, fresh_database: Database) -> None:
    """The purge needs no owner rights: the purge policies let the application role do it."""
    import asyncpg

    user = f"role-{uuid.uuid4().hex[:8]}"
    planted = await plant(fresh_database, user)
    role = f"taskstore_purge_{uuid.uuid4().hex[:8]}"
    dsn = make_url(fresh_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON task, conversation, message TO {role}")
        await admin.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        engine = create_engine(database_config(make_url(fresh_url).set(username=role).render_as_string(hide_password=False)))
        try:
            result = await purge_deleted(engine, older_than_seconds=RETENTION_DAYS * 86400, batch_size=BATCH_SIZE)
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
    assert (result.tasks, result.conversations, result.messages) == (5, 3, 6)
    task_ids, conversation_ids, _, total = await remaining(fresh_database, user)
    assert task_ids == expected_tasks(planted)
    assert conversation_ids == expected_conversations(planted)
    assert total == planted.kept_messages
