"""Row-level security on PostgreSQL: the database itself hides other users' rows.

The tests connect as a non-owner application role (created per test session and dropped at
the end), as a deployment would for serving, and run hand-written SQL without user conditions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from store import Database, create_engine, database_config
from store import migrate
from tests.conftest import PostgresDatabases, postgres_admin_url


@pytest.fixture(scope="module")
async def rls_database(postgres_databases: PostgresDatabases) -> AsyncIterator[tuple[str, str]]:
    """A migrated database with two users' rows and an application role; yields (dsn, role)."""
    postgres_admin_url()
    url = await postgres_databases.create("taskstore_rls")
    engine = create_engine(database_config(url))
    await migrate.upgrade(engine)
    database = Database(engine)
    from store import ConversationRepository, TaskRepository

    tasks, conversations = TaskRepository(database), ConversationRepository(database)
    for user in ("alice", "bob"):
        for number in range(3):
            await tasks.create_task(user, {"title": f"{user} task {number}"})
        conversation = await conversations.create_conversation(user, f"{user} chat")
        await conversations.add_message(user, conversation.id, "user", f"{user} says hi")
    await engine.dispose()

    role = f"taskstore_app_{uuid.uuid4().hex[:8]}"
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    await admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON task, conversation, message TO {role}")
    await admin.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    await admin.close()
    yield dsn, role

    admin = await asyncpg.connect(dsn)
    await admin.execute(f"DROP OWNED BY {role}")
    await admin.execute(f"DROP ROLE {role}")
    await admin.close()


async def _as_app(dsn: str, role: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(dsn)
    # A superuser bypasses row-level security; SET ROLE makes the session a plain application role.
    await connection.execute(f"SET ROLE {role}")
    return connection


@pytest.mark.parametrize("table", ["task", "conversation", "message"])
async def test_no_user_setting_sees_no_rows(rls_database: tuple[str, str], table: str) -> None:
    connection = await _as_app(*rls_database)
    try:
        rows = await connection.fetch(f"SELECT * FROM {table}")
    finally:
        await connection.close()
    assert rows == []


@pytest.mark.parametrize("table", ["task", "conversation", "message"])
async def test_user_setting_sees_only_own_rows(rls_database: tuple[str, str], table: str) -> None:
    connection = await _as_app(*rls_database)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('taskstore.user_id', 'alice', true)")
            owners = {row["user_id"] for row in await connection.fetch(f"SELECT * FROM {table}")}
    finally:
        await connection.close()
    assert owners == {"alice"}


async def test_update_without_where_touches_only_own_rows(rls_database: tuple[str, str]) -> None:
    dsn, role = rls_database
    connection = await _as_app(dsn, role)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('taskstore.user_id', 'alice', true)")
            status = await connection.execute("UPDATE task SET description = 'rewritten'")
    finally:
        await connection.close()
    admin = await asyncpg.connect(dsn)
    try:
        rewritten = await admin.fetch("SELECT user_id FROM task WHERE description = 'rewritten'")
    finally:
        await admin.close()
    assert status == "UPDATE 3"
    assert {row["user_id"] for row in rewritten} == {"alice"}


async def test_insert_for_another_user_rejected(rls_database: tuple[str, str]) -> None:
    connection = await _as_app(*rls_database)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with connection.transaction():
                await connection.execute("SELECT set_config('taskstore.user_id', 'alice', true)")
                await connection.execute(
                    "INSERT INTO task (user_id, title, created_at, updated_at) VALUES ('bob', 'planted', now(), now())"
                )
    finally:
        await connection.close()


async def test_delete_without_where_touches_only_own_rows(rls_database: tuple[str, str]) -> None:
    dsn, role = rls_database
    connection = await _as_app(dsn, role)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("SELECT set_config('taskstore.user_id', 'bob', true)")
        status = await connection.execute("DELETE FROM message")
        await transaction.rollback()
    finally:
        await connection.close()
    assert status == "DELETE 1"


async def test_setting_does_not_outlive_transaction(rls_database: tuple[str, str]) -> None:
    connection = await _as_app(*rls_database)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('taskstore.user_id', 'alice', true)")
        rows = await connection.fetch("SELECT * FROM task")
    finally:
        await connection.close()
    assert rows == []


async def test_purge_mode_sees_only_deleted_rows(rls_database: tuple[str, str]) -> None:
    connection = await _as_app(*rls_database)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('taskstore.maintenance', 'purge', true)")
            rows = await connection.fetch("SELECT * FROM task")
    finally:
        await connection.close()
    # Nothing is soft-deleted in this database, so purge mode must reveal nothing.
    assert rows == []


async def test_store_works_as_application_role(rls_database: tuple[str, str]) -> None:
    """Every repository method sets the user id, so it works under the policies as a non-owner."""
    from store import ConversationRepository, TaskRepository
    from store.retention import purge_deleted

    dsn, role = rls_database
    engine = create_engine(database_config(make_url(dsn).set(username=role).render_as_string(hide_password=False)))
    database = Database(engine)
    tasks, conversations = TaskRepository(database), ConversationRepository(database)
    try:
        created = await tasks.create_task("carol", {"title": "under rls", "idempotency_key": "k"})
        again = await tasks.create_task("carol", {"title": "under rls", "idempotency_key": "k"})
        updated = await tasks.update_task("carol", created.id, {"priority": "high"}, expected_version=1)
        completed = await tasks.complete_task("carol", created.id)
        deleted = await tasks.soft_delete_task("carol", created.id)
        trash = await tasks.list_deleted_tasks("carol")
        restored = await tasks.restore_task("carol", created.id)
        listed = await tasks.get_active_tasks("carol")
        alice_sees = await tasks.get_active_tasks("alice")
        conversation = await conversations.create_conversation("carol", "rls chat")
        await conversations.add_message("carol", conversation.id, "user", "hello", idempotency_key="m")
        history = await conversations.get_history("carol", conversation.id)
        await conversations.soft_delete_conversation("carol", conversation.id)
        purged = await purge_deleted(engine, older_than_seconds=1_000_000)
    finally:
        await engine.dispose()

    assert again.id == created.id
    assert updated.version == 2
    assert completed.completed is True
    assert deleted.deleted_at is not None
    assert [task.id for task in trash.items] == [created.id]
    assert restored.deleted_at is None
    assert [task.id for task in listed.items] == [created.id]
    assert {task.title for task in alice_sees.items} == {f"alice task {number}" for number in range(3)}
    assert [message.content for message in history.items] == ["hello"]
    # The conversation was deleted just now, so a retention of about 11 days keeps it.
    assert purged.conversations == 0
