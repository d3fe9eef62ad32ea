"""Behaviour of the repositories against real databases, on SQLite and PostgreSQL.

Each test uses fresh user ids from the ``user_ids`` fixture, so tests share one database per
backend without seeing each other's rows. The migration tests make databases of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from store import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ConversationNotFound,
    ConversationRepository,
    Database,
    InvalidCursor,
    InvalidInput,
    NotFound,
    StoreError,
    TaskNotFound,
    TaskRepository,
    VersionConflict,
    create_engine,
    database_config,
    migrate,
)
from store.models import ID_MAX, Conversation, Message, Task
from tests.conftest import make_database_url

# An id that passes the id checks and so reaches the database, where no row has it.
MISSING_ID = ID_MAX
TABLES = {"task", "conversation", "message"}


def _message_shape(error: NotFound) -> str:
    """Return the error message with its id replaced, to compare errors about different ids."""
    return str(error).replace(str(error.item_id), "{id}")


async def _not_found_pair(call: Callable[[int], Awaitable[object]], other_id: int) -> tuple[NotFound, NotFound]:
    """Return the errors ``call`` raises for another user's row and for an id no row has."""
    with pytest.raises(NotFound) as other:
        await call(other_id)
    with pytest.raises(NotFound) as missing:
        await call(MISSING_ID)
    return other.value, missing.value


async def _count(database: Database, user: str, table: Any, *conditions: Any) -> int:
    """Count ``user``'s rows of ``table`` inside the store's transaction, which row-level security lets through."""
    query = select(func.count()).select_from(table).where(table.c.user_id == user, *conditions)
    async with database.transaction(user, "count rows in a test") as connection:
        return (await connection.execute(query)).scalar_one()


async def _set_column(database: Database, user: str, table: Any, column: str, value: Any) -> None:
    """Write ``value`` into a column of all ``user``'s rows, to build states the API cannot, such as equal times."""
    async with database.transaction(user, "set a column in a test") as connection:
        await connection.execute(update(table).where(table.c.user_id == user).values({column: value}))


async def _all_task_ids(tasks: TaskRepository, user: str, limit: int, **filters: Any) -> list[list[int]]:
    """Walk every page of the active list and return the ids of each page."""
    pages: list[list[int]] = []
    cursor = None
    for _ in range(100):
        page = await tasks.get_active_tasks(user, filters or None, limit=limit, cursor=cursor)
        pages.append([task.id for task in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("the list did not end within 100 pages")


# --- isolation: tasks ------------------------------------------------------------------------


async def test_get_task_hides_other_users_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    theirs = await tasks.create_task(b, {"title": "B's task"})
    other, missing = await _not_found_pair(lambda task_id: tasks.get_task(a, task_id), theirs.id)
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await tasks.get_task(b, theirs.id) == theirs


async def test_get_active_tasks_lists_only_own_tasks(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    mine = await tasks.create_task(a, {"title": "shared words"})
    await tasks.create_task(b, {"title": "shared words"})
    page = await tasks.get_active_tasks(a, {"search": "shared"})
    assert [task.id for task in page.items] == [mine.id]


async def test_other_users_cursor_pages_only_own_tasks(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    for i in range(3):
        await tasks.create_task(b, {"title": f"theirs {i}"})
    mine = [(await tasks.create_task(a, {"title": f"mine {i}"})).id for i in range(3)]
    # The cursor points past B's first task, and all of A's tasks come after it.
    their_cursor = (await tasks.get_active_tasks(b, limit=1)).next_cursor
    page = await tasks.get_active_tasks(a, cursor=their_cursor)
    assert [task.id for task in page.items] == mine


async def test_update_task_hides_other_users_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    theirs = await tasks.create_task(b, {"title": "B's task"})
    other, missing = await _not_found_pair(
        lambda task_id: tasks.update_task(a, task_id, {"title": "hijacked"}), theirs.id
    )
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await tasks.get_task(b, theirs.id) == theirs


async def test_versioned_update_hides_other_users_task(
    tasks: TaskRepository, user_ids: tuple[str, str]
) -> None:
    # A version conflict would reveal that the row exists.
    a, b = user_ids
    theirs = await tasks.create_task(b, {"title": "B's task"})
    other, missing = await _not_found_pair(
        lambda task_id: tasks.update_task(a, task_id, {"title": "hijacked"}, expected_version=99), theirs.id
    )
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await tasks.get_task(b, theirs.id) == theirs


async def test_set_completed_hides_other_users_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    theirs = await tasks.create_task(b, {"title": "B's task"})
    other, missing = await _not_found_pair(lambda task_id: tasks.set_completed(a, task_id, True), theirs.id)
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await tasks.get_task(b, theirs.id) == theirs


async def test_complete_task_hides_other_users_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    theirs = await tasks.create_task(b, {"title": "B's task"})
    other, missing = await _not_found_pair(lambda task_id: tasks.complete_task(a, task_id), theirs.id)
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await tasks.get_task(b, theirs.id) == theirs


async def test_reopen_task_hides_other_users_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    created = await tasks.create_task(b, {"title": "B's task"})
    theirs = await tasks.complete_task(b, created.id)
    other, missing = await _not_found_pair(lambda task_id: tasks.reopen_task(a, task_id), theirs.id)
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await tasks.get_task(b, theirs.id) == theirs


async def test_soft_delete_task_hides_other_users_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    theirs = await tasks.create_task(b, {"title": "B's task"})
    other, missing = await _not_found_pair(lambda task_id: tasks.soft_delete_task(a, task_id), theirs.id)
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await tasks.get_task(b, theirs.id) == theirs


async def test_restore_task_hides_other_users_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    created = await tasks.create_task(b, {"title": "B's task"})
    theirs = await tasks.soft_delete_task(b, created.id)
    other, missing = await _not_found_pair(lambda task_id: tasks.restore_task(a, task_id), theirs.id)
    assert type(other) is TaskNotFound
    assert type(missing) is TaskNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert (await tasks.list_deleted_tasks(b)).items == [theirs]


async def test_list_deleted_tasks_lists_only_own_tasks(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    mine = await tasks.soft_delete_task(a, (await tasks.create_task(a, {"title": "mine"})).id)
    await tasks.soft_delete_task(b, (await tasks.create_task(b, {"title": "theirs"})).id)
    page = await tasks.list_deleted_tasks(a)
    assert [task.id for task in page.items] == [mine.id]


# --- isolation: conversations ------------------------------------------------------------------


async def test_get_conversation_hides_other_users_conversation(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    a, b = user_ids
    theirs = await conversations.create_conversation(b, "B's chat")
    other, missing = await _not_found_pair(lambda cid: conversations.get_conversation(a, cid), theirs.id)
    assert type(other) is ConversationNotFound
    assert type(missing) is ConversationNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await conversations.get_conversation(b, theirs.id) == theirs


async def test_list_conversations_lists_only_own_conversations(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    a, b = user_ids
    mine = await conversations.create_conversation(a, "mine")
    await conversations.create_conversation(b, "theirs")
    page = await conversations.list_conversations(a)
    assert [conversation.id for conversation in page.items] == [mine.id]


async def test_add_message_hides_other_users_conversation(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    a, b = user_ids
    created = await conversations.create_conversation(b, "B's chat")
    await conversations.add_message(b, created.id, "user", "B's words")
    theirs = await conversations.get_conversation(b, created.id)
    history = await conversations.get_history(b, theirs.id)
    other, missing = await _not_found_pair(lambda cid: conversations.add_message(a, cid, "user", "injected"), theirs.id)
    assert type(other) is ConversationNotFound
    assert type(missing) is ConversationNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await conversations.get_conversation(b, theirs.id) == theirs
    assert await conversations.get_history(b, theirs.id) == history


async def test_get_history_hides_other_users_conversation(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    a, b = user_ids
    theirs = await conversations.create_conversation(b, "B's chat")
    await conversations.add_message(b, theirs.id, "user", "B's words")
    history = await conversations.get_history(b, theirs.id)
    other, missing = await _not_found_pair(lambda cid: conversations.get_history(a, cid), theirs.id)
    assert type(other) is ConversationNotFound
    assert type(missing) is ConversationNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await conversations.get_history(b, theirs.id) == history


async def test_soft_delete_conversation_hides_other_users_conversation(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    a, b = user_ids
    theirs = await conversations.create_conversation(b, "B's chat")
    other, missing = await _not_found_pair(lambda cid: conversations.soft_delete_conversation(a, cid), theirs.id)
    assert type(other) is ConversationNotFound
    assert type(missing) is ConversationNotFound
    assert _message_shape(other) == _message_shape(missing)
    assert await conversations.get_conversation(b, theirs.id) == theirs


# --- soft delete -------------------------------------------------------------------------------

DELETED_TASK_OPERATIONS = [
    pytest.param(lambda tasks, user, task_id: tasks.get_task(user, task_id), id="get"),
    pytest.param(lambda tasks, user, task_id: tasks.update_task(user, task_id, {"title": "new"}), id="update"),
    pytest.param(lambda tasks, user, task_id: tasks.complete_task(user, task_id), id="complete"),
    pytest.param(lambda tasks, user, task_id: tasks.reopen_task(user, task_id), id="reopen"),
    pytest.param(lambda tasks, user, task_id: tasks.soft_delete_task(user, task_id), id="delete-again"),
]


@pytest.mark.parametrize("operation", DELETED_TASK_OPERATIONS)
async def test_deleted_task_is_not_found(
    tasks: TaskRepository, user_ids: tuple[str, str], operation: Callable[..., Awaitable[object]]
) -> None:
    user, _ = user_ids
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "gone"})).id)
    with pytest.raises(TaskNotFound):
        await operation(tasks, user, deleted.id)


@pytest.mark.parametrize("operation", DELETED_TASK_OPERATIONS[1:])
async def test_operation_on_deleted_task_leaves_it_unchanged(
    tasks: TaskRepository, user_ids: tuple[str, str], operation: Callable[..., Awaitable[object]]
) -> None:
    user, _ = user_ids
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "gone"})).id)
    with pytest.raises(TaskNotFound):
        await operation(tasks, user, deleted.id)
    assert (await tasks.list_deleted_tasks(user)).items == [deleted]


async def test_deleted_task_is_hidden_from_list(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    active = await tasks.create_task(user, {"title": "active"})
    await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "deleted"})).id)
    page = await tasks.get_active_tasks(user, {"status": "all"})
    assert [task.id for task in page.items] == [active.id]


async def test_deleted_task_appears_in_list_deleted_tasks(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    await tasks.create_task(user, {"title": "kept"})
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "gone"})).id)
    page = await tasks.list_deleted_tasks(user)
    assert [task.id for task in page.items] == [deleted.id]


async def test_soft_delete_sets_deleted_at(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "gone"})).id)
    assert deleted.deleted_at is not None


async def test_list_deleted_tasks_puts_latest_deletion_first(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    first = await tasks.create_task(user, {"title": "first"})
    second = await tasks.create_task(user, {"title": "second"})
    await tasks.soft_delete_task(user, second.id)
    await tasks.soft_delete_task(user, first.id)
    page = await tasks.list_deleted_tasks(user)
    assert [task.id for task in page.items] == [first.id, second.id]


async def test_restore_increments_version(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "back"})).id)
    restored = await tasks.restore_task(user, deleted.id)
    assert restored.version == deleted.version + 1


async def test_restore_clears_deleted_at(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "back"})).id)
    restored = await tasks.restore_task(user, deleted.id)
    assert restored.deleted_at is None


async def test_restored_task_is_listed_again(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "back"})).id)
    await tasks.restore_task(user, deleted.id)
    page = await tasks.get_active_tasks(user)
    assert [task.id for task in page.items] == [deleted.id]


async def test_restored_task_leaves_list_deleted_tasks(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    deleted = await tasks.soft_delete_task(user, (await tasks.create_task(user, {"title": "back"})).id)
    await tasks.restore_task(user, deleted.id)
    page = await tasks.list_deleted_tasks(user)
    assert page.items == []


async def test_restore_of_active_task_is_not_found(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    active = await tasks.create_task(user, {"title": "active"})
    with pytest.raises(TaskNotFound):
        await tasks.restore_task(user, active.id)


DELETED_CONVERSATION_OPERATIONS = [
    pytest.param(lambda repo, user, cid: repo.add_message(user, cid, "user", "hello?"), id="add-message"),
    pytest.param(lambda repo, user, cid: repo.get_history(user, cid), id="get-history"),
    pytest.param(lambda repo, user, cid: repo.get_conversation(user, cid), id="get"),
    pytest.param(lambda repo, user, cid: repo.soft_delete_conversation(user, cid), id="delete-again"),
]


@pytest.mark.parametrize("operation", DELETED_CONVERSATION_OPERATIONS)
async def test_deleted_conversation_is_not_found(
    conversations: ConversationRepository, user_ids: tuple[str, str], operation: Callable[..., Awaitable[object]]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user, "old chat")
    await conversations.soft_delete_conversation(user, conversation.id)
    with pytest.raises(ConversationNotFound):
        await operation(conversations, user, conversation.id)


async def test_add_message_to_deleted_conversation_writes_no_message(
    conversations: ConversationRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user, "old chat")
    await conversations.add_message(user, conversation.id, "user", "before the delete")
    await conversations.soft_delete_conversation(user, conversation.id)
    with pytest.raises(ConversationNotFound):
        await conversations.add_message(user, conversation.id, "user", "hello?")
    assert await _count(database, user, Message.__table__) == 1


async def test_deleted_conversation_is_hidden_from_list(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    active = await conversations.create_conversation(user, "active")
    deleted = await conversations.create_conversation(user, "deleted")
    await conversations.soft_delete_conversation(user, deleted.id)
    page = await conversations.list_conversations(user)
    assert [conversation.id for conversation in page.items] == [active.id]


# --- lists: pagination -------------------------------------------------------------------------


async def test_pagination_returns_every_task_once_in_order(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    created = [(await tasks.create_task(user, {"title": f"task {i}"})).id for i in range(7)]
    pages = await _all_task_ids(tasks, user, limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [task_id for page in pages for task_id in page] == created


async def test_filtered_pagination_returns_each_once(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    created = [(await tasks.create_task(user, {"title": f"task {i}", "priority": "high"})).id for i in range(5)]
    await tasks.create_task(user, {"title": "low one", "priority": "low"})
    pages = await _all_task_ids(tasks, user, limit=2, priority="high")
    assert [task_id for page in pages for task_id in page] == created


async def test_page_of_exact_size_has_no_next_cursor(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    for i in range(3):
        await tasks.create_task(user, {"title": f"task {i}"})
    page = await tasks.get_active_tasks(user, limit=3)
    assert page.next_cursor is None


async def test_deleted_list_pagination_with_equal_deletion_times(
    tasks: TaskRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    created = [(await tasks.create_task(user, {"title": f"task {i}"})).id for i in range(5)]
    for task_id in created:
        await tasks.soft_delete_task(user, task_id)
    # Equal deletion times make the id the only tie-breaker of the keyset.
    tie = datetime(2026, 1, 1, tzinfo=UTC)
    await _set_column(database, user, Task.__table__, "deleted_at", tie)
    seen: list[Any] = []
    cursor = None
    for _ in range(10):
        page = await tasks.list_deleted_tasks(user, limit=2, cursor=cursor)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert {task.deleted_at for task in seen} == {tie}
    assert [task.id for task in seen] == sorted(created, reverse=True)


async def test_conversation_pagination_returns_each_once_latest_first(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    created = [(await conversations.create_conversation(user, f"chat {i}")).id for i in range(5)]
    # A new message moves its conversation to the front.
    await conversations.add_message(user, created[1], "user", "bump")
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        page = await conversations.list_conversations(user, limit=2, cursor=cursor)
        seen.extend(conversation.id for conversation in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [created[1], created[4], created[3], created[2], created[0]]


async def test_conversation_pagination_with_equal_update_times(
    conversations: ConversationRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    created = [(await conversations.create_conversation(user, f"chat {i}")).id for i in range(5)]
    tie = datetime(2026, 1, 1, tzinfo=UTC)
    await _set_column(database, user, Conversation.__table__, "updated_at", tie)
    seen: list[Any] = []
    cursor = None
    for _ in range(10):
        page = await conversations.list_conversations(user, limit=2, cursor=cursor)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert {conversation.updated_at for conversation in seen} == {tie}
    assert [conversation.id for conversation in seen] == sorted(created, reverse=True)


@pytest.fixture(scope="module")
async def many_tasks(database: Database) -> tuple[str, list[int]]:
    """Create a user with one task more than the largest page, for the page size tests."""
    user = f"user-many-{uuid.uuid4().hex[:10]}"
    repository = TaskRepository(database)
    ids = [(await repository.create_task(user, {"title": f"task {i}"})).id for i in range(MAX_PAGE_SIZE + 1)]
    return user, ids


async def test_default_page_size_is_50(tasks: TaskRepository, many_tasks: tuple[str, list[int]]) -> None:
    user, ids = many_tasks
    page = await tasks.get_active_tasks(user)
    assert DEFAULT_PAGE_SIZE == 50
    assert [task.id for task in page.items] == ids[:50]


async def test_page_size_200_returns_200(tasks: TaskRepository, many_tasks: tuple[str, list[int]]) -> None:
    user, ids = many_tasks
    page = await tasks.get_active_tasks(user, limit=200)
    assert [task.id for task in page.items] == ids[:200]
    assert page.next_cursor is not None


async def test_page_after_200_holds_the_rest(tasks: TaskRepository, many_tasks: tuple[str, list[int]]) -> None:
    user, ids = many_tasks
    first = await tasks.get_active_tasks(user, limit=200)
    second = await tasks.get_active_tasks(user, limit=200, cursor=first.next_cursor)
    assert [task.id for task in second.items] == ids[200:]
    assert second.next_cursor is None


LIST_CALLS = [
    pytest.param(lambda t, c, user, cid, **kw: t.get_active_tasks(user, **kw), id="active-tasks"),
    pytest.param(lambda t, c, user, cid, **kw: t.list_deleted_tasks(user, **kw), id="deleted-tasks"),
    pytest.param(lambda t, c, user, cid, **kw: c.list_conversations(user, **kw), id="conversations"),
    pytest.param(lambda t, c, user, cid, **kw: c.get_history(user, cid, **kw), id="history"),
]


@pytest.mark.parametrize("limit", [0, 201, -1, True, "50", 10.0])
@pytest.mark.parametrize("call", LIST_CALLS)
async def test_list_rejects_page_size_out_of_range(
    tasks: TaskRepository,
    conversations: ConversationRepository,
    user_ids: tuple[str, str],
    call: Callable[..., Awaitable[object]],
    limit: object,
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    with pytest.raises(InvalidInput) as caught:
        await call(tasks, conversations, user, conversation.id, limit=limit)
    assert caught.value.field == "limit"
    assert "from 1 to 200" in caught.value.message


@pytest.mark.parametrize("cursor", ["garbage", "", "eyJ0IjogMX0", "A" * 500])
@pytest.mark.parametrize("call", LIST_CALLS[:3])
async def test_list_rejects_invalid_cursor(
    tasks: TaskRepository,
    conversations: ConversationRepository,
    user_ids: tuple[str, str],
    call: Callable[..., Awaitable[object]],
    cursor: str,
) -> None:
    user, _ = user_ids
    with pytest.raises(InvalidCursor) as caught:
        await call(tasks, conversations, user, 0, cursor=cursor)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize("before", ["garbage", "", "eyJ0IjogMX0", "A" * 500])
async def test_history_rejects_invalid_before_cursor(
    conversations: ConversationRepository, user_ids: tuple[str, str], before: str
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    with pytest.raises(InvalidCursor) as caught:
        await conversations.get_history(user, conversation.id, before=before)
    assert caught.value.field == "before"


async def test_deleted_list_rejects_active_list_cursor(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    for i in range(2):
        await tasks.create_task(user, {"title": f"task {i}"})
    active_cursor = (await tasks.get_active_tasks(user, limit=1)).next_cursor
    with pytest.raises(InvalidCursor):
        await tasks.list_deleted_tasks(user, cursor=active_cursor)


async def test_active_list_rejects_history_cursor(
    tasks: TaskRepository, conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    for i in range(2):
        await conversations.add_message(user, conversation.id, "user", f"message {i}")
    history_cursor = (await conversations.get_history(user, conversation.id, limit=1)).next_cursor
    with pytest.raises(InvalidCursor):
        await tasks.get_active_tasks(user, cursor=history_cursor)


# --- lists: filters ----------------------------------------------------------------------------

FILTER_TASKS: dict[str, dict[str, Any]] = {
    "alpha": {"title": "Alpha report", "priority": "high", "due_at": "2000-01-01T00:00:00Z"},
    "beta": {"title": "Beta review", "priority": "low", "due_at": "2000-06-01T00:00:00Z"},
    "gamma": {"title": "Gamma plan", "priority": "medium", "due_at": "2990-01-01T00:00:00Z"},
    "delta": {"title": "Delta", "description": "Has 100% COVERAGE"},
    "underscore": {"title": "snake_case name"},
    "no_underscore": {"title": "snakeXcase name"},
    "percent": {"title": "50% off"},
    "fifty": {"title": "50 percent"},
    "umlaut": {"title": "ÄRGER melden"},
}
ALL_ACTIVE = list(FILTER_TASKS)
PENDING = [name for name in ALL_ACTIVE if name != "beta"]


@pytest.fixture(scope="module")
async def filter_tasks(database: Database) -> tuple[str, dict[str, int]]:
    """Create FILTER_TASKS for a new user and complete beta.

    It also adds a deleted task and another user's task, which match most filters but must never be listed.
    """
    user = f"user-filter-{uuid.uuid4().hex[:10]}"
    repository = TaskRepository(database)
    ids = {name: (await repository.create_task(user, data)).id for name, data in FILTER_TASKS.items()}
    await repository.complete_task(user, ids["beta"])
    everything = {"title": "Alpha 50% snake_case ärger", "priority": "high", "due_at": "2000-01-01T00:00:00Z"}
    deleted = await repository.create_task(user, everything)
    await repository.soft_delete_task(user, deleted.id)
    await repository.create_task(f"user-other-{uuid.uuid4().hex[:10]}", everything)
    return user, ids


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, ALL_ACTIVE, id="none"),
        pytest.param({"status": "all"}, ALL_ACTIVE, id="status-all"),
        pytest.param({"status": "pending"}, PENDING, id="status-pending"),
        pytest.param({"status": "completed"}, ["beta"], id="status-completed"),
        pytest.param({"priority": "high"}, ["alpha"], id="priority-high"),
        pytest.param({"priority": "medium"}, ["gamma"], id="priority-medium"),
        pytest.param({"priority": "low"}, ["beta"], id="priority-low"),
        # due_before excludes its own instant, but due_after includes it.
        pytest.param({"due_before": "2000-06-01T00:00:00Z"}, ["alpha"], id="due-before-exclusive"),
        pytest.param({"due_before": "2000-06-01T02:00:00.000001+02:00"}, ["alpha", "beta"], id="due-before-offset"),
        pytest.param({"due_after": "2000-06-01T00:00:00Z"}, ["beta", "gamma"], id="due-after-inclusive"),
        pytest.param({"due_after": "2000-06-01T00:00:00.000001Z"}, ["gamma"], id="due-after-just-past"),
        pytest.param(
            {"due_after": "1999-01-01T00:00:00Z", "due_before": "2100-01-01T00:00:00Z"},
            ["alpha", "beta"],
            id="due-window",
        ),
        pytest.param({"overdue": True}, ["alpha"], id="overdue"),
        pytest.param({"overdue": False}, ALL_ACTIVE, id="overdue-false"),
        pytest.param({"overdue": True, "priority": "low"}, [], id="overdue-and-low"),
        pytest.param({"status": "completed", "priority": "low"}, ["beta"], id="completed-and-low"),
        pytest.param({"status": "pending", "priority": "low"}, [], id="pending-and-low"),
        pytest.param({"search": "alpha"}, ["alpha"], id="search-lower-case"),
        pytest.param({"search": "ALPHA REPORT"}, ["alpha"], id="search-upper-case"),
        pytest.param({"search": "coverage"}, ["delta"], id="search-description"),
        pytest.param({"search": "100%"}, ["delta"], id="search-percent-in-description"),
        pytest.param({"search": "50%"}, ["percent"], id="search-literal-percent"),
        pytest.param({"search": "%"}, ["delta", "percent"], id="search-percent-only"),
        pytest.param({"search": "_"}, ["underscore"], id="search-underscore-only"),
        pytest.param({"search": "e_c"}, ["underscore"], id="search-literal-underscore"),
        pytest.param({"search": "/"}, [], id="search-escape-character"),
        pytest.param({"search": "ärger"}, ["umlaut"], id="search-non-ascii-case"),
        pytest.param({"search": "no such words"}, [], id="search-no-match"),
        pytest.param({"search": "a", "priority": "medium"}, ["gamma"], id="search-and-priority"),
    ],
)
async def test_filter_returns_expected_tasks(
    tasks: TaskRepository, filter_tasks: tuple[str, dict[str, int]], filters: dict[str, Any], expected: list[str]
) -> None:
    user, ids = filter_tasks
    page = await tasks.get_active_tasks(user, filters)
    assert [task.id for task in page.items] == sorted(ids[name] for name in expected)


# --- history -----------------------------------------------------------------------------------


async def _conversation_with_messages(
    conversations: ConversationRepository, user: str, count: int
) -> tuple[int, list[int]]:
    conversation = await conversations.create_conversation(user, "chat")
    ids = [(await conversations.add_message(user, conversation.id, "user", f"message {i}")).id for i in range(count)]
    return conversation.id, ids


async def test_history_is_oldest_first(conversations: ConversationRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    conversation_id, ids = await _conversation_with_messages(conversations, user, 5)
    page = await conversations.get_history(user, conversation_id)
    assert [message.id for message in page.items] == ids


async def test_history_returns_latest_limit_messages(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation_id, ids = await _conversation_with_messages(conversations, user, 5)
    page = await conversations.get_history(user, conversation_id, limit=3)
    assert [message.id for message in page.items] == ids[2:]


async def test_history_before_walks_back_to_start(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation_id, ids = await _conversation_with_messages(conversations, user, 7)
    pages: list[list[int]] = []
    before = None
    for _ in range(10):
        page = await conversations.get_history(user, conversation_id, limit=3, before=before)
        pages.append([message.id for message in page.items])
        before = page.next_cursor
        if before is None:
            break
    assert pages == [ids[4:], ids[1:4], ids[:1]]


async def test_full_last_history_page_ends(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation_id, _ = await _conversation_with_messages(conversations, user, 3)
    page = await conversations.get_history(user, conversation_id, limit=3)
    assert page.next_cursor is None


async def test_history_excludes_other_conversations(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation_id, ids = await _conversation_with_messages(conversations, user, 2)
    await _conversation_with_messages(conversations, user, 2)
    page = await conversations.get_history(user, conversation_id)
    assert [message.id for message in page.items] == ids


async def test_history_keeps_content_and_role(conversations: ConversationRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    await conversations.add_message(user, conversation.id, "user", "question")
    await conversations.add_message(user, conversation.id, "assistant", "answer")
    page = await conversations.get_history(user, conversation.id)
    expected = [("user", "question"), ("assistant", "answer")]
    assert [(message.role, message.content) for message in page.items] == expected


async def test_add_message_moves_conversation_updated_at(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    message = await conversations.add_message(user, conversation.id, "user", "hi")
    fetched = await conversations.get_conversation(user, conversation.id)
    assert fetched.updated_at == message.created_at


# --- idempotency -------------------------------------------------------------------------------


async def _count_tasks_with_key(database: Database, user: str, key: str) -> int:
    table = Task.__table__
    return await _count(database, user, table, table.c.idempotency_key == key)


async def _count_messages_with_key(database: Database, user: str, key: str) -> int:
    table = Message.__table__
    return await _count(database, user, table, table.c.idempotency_key == key)


async def test_create_task_retry_returns_original(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    original = await tasks.create_task(user, {"title": "original", "idempotency_key": "retry-1"})
    retried = await tasks.create_task(user, {"title": "changed on retry", "idempotency_key": "retry-1"})
    assert retried == original


async def test_create_task_retry_writes_one_row(
    tasks: TaskRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    for _ in range(3):
        await tasks.create_task(user, {"title": "once", "idempotency_key": "retry-1"})
    assert await _count_tasks_with_key(database, user, "retry-1") == 1


async def test_create_task_without_key_writes_each_call(
    tasks: TaskRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    for _ in range(2):
        await tasks.create_task(user, {"title": "twice"})
    assert await _count(database, user, Task.__table__) == 2


async def test_concurrent_create_task_writes_once(
    tasks: TaskRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    results = await asyncio.gather(
        *(tasks.create_task(user, {"title": f"racer {i}", "idempotency_key": "race"}) for i in range(10))
    )
    assert len({task.id for task in results}) == 1
    assert await _count_tasks_with_key(database, user, "race") == 1


async def test_task_idempotency_key_is_per_user(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    a, b = user_ids
    mine = await tasks.create_task(a, {"title": "A's", "idempotency_key": "same-key"})
    theirs = await tasks.create_task(b, {"title": "B's", "idempotency_key": "same-key"})
    assert theirs.id != mine.id
    assert theirs.title == "B's"
    assert await tasks.get_task(a, mine.id) == mine


async def test_add_message_retry_returns_original(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    original = await conversations.add_message(user, conversation.id, "user", "original", "retry-1")
    retried = await conversations.add_message(user, conversation.id, "user", "changed on retry", "retry-1")
    assert retried == original


async def test_add_message_retry_writes_one_row(
    conversations: ConversationRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    for _ in range(3):
        await conversations.add_message(user, conversation.id, "user", "once", "retry-1")
    assert await _count_messages_with_key(database, user, "retry-1") == 1


async def test_concurrent_add_message_writes_once(
    conversations: ConversationRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    results = await asyncio.gather(
        *(conversations.add_message(user, conversation.id, "user", f"racer {i}", "race") for i in range(10))
    )
    assert len({message.id for message in results}) == 1
    assert await _count_messages_with_key(database, user, "race") == 1


async def test_message_idempotency_key_is_per_user(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    a, b = user_ids
    mine = await conversations.create_conversation(a)
    theirs = await conversations.create_conversation(b)
    my_message = await conversations.add_message(a, mine.id, "user", "A's", "same-key")
    their_message = await conversations.add_message(b, theirs.id, "user", "B's", "same-key")
    assert their_message.id != my_message.id
    assert their_message.content == "B's"
    assert (await conversations.get_history(a, mine.id)).items == [my_message]


# --- version conflicts -------------------------------------------------------------------------

VERSIONED_OPERATIONS = [
    pytest.param(lambda tasks, user, tid, v: tasks.update_task(user, tid, {"title": "new"}, v), id="update"),
    pytest.param(lambda tasks, user, tid, v: tasks.complete_task(user, tid, v), id="complete"),
    pytest.param(lambda tasks, user, tid, v: tasks.reopen_task(user, tid, v), id="reopen"),
    pytest.param(lambda tasks, user, tid, v: tasks.soft_delete_task(user, tid, v), id="delete"),
]


@pytest.fixture
async def completed_task(tasks: TaskRepository, user_ids: tuple[str, str]) -> Any:
    """Create a completed task at version 2 for the versioned operations to act on."""
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "versioned", "description": "text"})
    return await tasks.complete_task(user, task.id)


@pytest.mark.parametrize("operation", VERSIONED_OPERATIONS)
async def test_wrong_version_raises_conflict_with_current_version(
    tasks: TaskRepository, user_ids: tuple[str, str], completed_task: Any, operation: Callable[..., Awaitable[object]]
) -> None:
    user, _ = user_ids
    with pytest.raises(VersionConflict) as caught:
        await operation(tasks, user, completed_task.id, 1)
    assert caught.value.current == 2
    assert caught.value.expected == 1
    assert caught.value.task_id == completed_task.id


@pytest.mark.parametrize("operation", VERSIONED_OPERATIONS)
async def test_wrong_version_leaves_task_unchanged(
    tasks: TaskRepository, user_ids: tuple[str, str], completed_task: Any, operation: Callable[..., Awaitable[object]]
) -> None:
    user, _ = user_ids
    with pytest.raises(VersionConflict):
        await operation(tasks, user, completed_task.id, 1)
    assert await tasks.get_task(user, completed_task.id) == completed_task


# Completing the completed task would change nothing, so complete is tested on its own below.
@pytest.mark.parametrize("operation", [case for case in VERSIONED_OPERATIONS if case.id != "complete"])
async def test_matching_version_applies_change(
    tasks: TaskRepository, user_ids: tuple[str, str], completed_task: Any, operation: Callable[..., Awaitable[object]]
) -> None:
    user, _ = user_ids
    changed: Any = await operation(tasks, user, completed_task.id, 2)
    assert changed.version == 3


async def test_complete_with_matching_version_completes(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "pending"})
    completed = await tasks.complete_task(user, task.id, expected_version=1)
    assert completed.completed is True
    assert completed.version == 2


@pytest.mark.parametrize("expected_version", [0, -1, True, "2"])
async def test_invalid_expected_version_is_rejected(
    tasks: TaskRepository, user_ids: tuple[str, str], completed_task: Any, expected_version: object
) -> None:
    user, _ = user_ids
    with pytest.raises(InvalidInput) as caught:
        await tasks.update_task(user, completed_task.id, {"title": "new"}, expected_version)  # type: ignore[arg-type]
    assert caught.value.field == "expected_version"


async def test_complete_of_completed_task_keeps_version(
    tasks: TaskRepository, user_ids: tuple[str, str], completed_task: Any
) -> None:
    user, _ = user_ids
    again = await tasks.complete_task(user, completed_task.id)
    assert again == completed_task


async def test_update_leaves_omitted_fields_unchanged(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    full = {"title": "full", "description": "text", "priority": "high", "due_at": "2030-01-01T00:00:00Z"}
    task = await tasks.create_task(user, full)
    updated = await tasks.update_task(user, task.id, {"title": "renamed"})
    assert updated.title == "renamed"
    assert updated.description == task.description
    assert updated.priority == task.priority
    assert updated.due_at == task.due_at


@pytest.mark.parametrize("field", ["description", "priority", "due_at"])
async def test_update_with_explicit_none_clears_field(
    tasks: TaskRepository, user_ids: tuple[str, str], field: str
) -> None:
    user, _ = user_ids
    full = {"title": "full", "description": "text", "priority": "high", "due_at": "2030-01-01T00:00:00Z"}
    task = await tasks.create_task(user, full)
    updated = await tasks.update_task(user, task.id, {field: None})
    assert getattr(updated, field) is None


@pytest.mark.parametrize("field", ["description", "priority", "due_at"])
async def test_clearing_one_field_keeps_others(
    tasks: TaskRepository, user_ids: tuple[str, str], field: str
) -> None:
    user, _ = user_ids
    full = {"title": "full", "description": "text", "priority": "high", "due_at": "2030-01-01T00:00:00Z"}
    task = await tasks.create_task(user, full)
    updated = await tasks.update_task(user, task.id, {field: None})
    others = [name for name in ("title", "description", "priority", "due_at") if name != field]
    assert [getattr(updated, name) for name in others] == [getattr(task, name) for name in others]


async def test_update_increments_version(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "v1"})
    updated = await tasks.update_task(user, task.id, {"title": "v2"})
    assert updated.version == task.version + 1


async def test_update_is_persisted(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "v1"})
    updated = await tasks.update_task(user, task.id, {"title": "v2", "priority": "low"})
    assert await tasks.get_task(user, task.id) == updated


# --- transactions ------------------------------------------------------------------------------


async def test_add_message_to_missing_conversation_writes_no_message(
    conversations: ConversationRepository, database: Database, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    existing = await conversations.create_conversation(user, "existing")
    await conversations.add_message(user, existing.id, "user", "kept")
    with pytest.raises(ConversationNotFound):
        await conversations.add_message(user, MISSING_ID, "user", "lost")
    assert await _count(database, user, Message.__table__) == 1


async def test_add_message_to_missing_conversation_touches_no_conversation(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    for i in range(2):
        await conversations.create_conversation(user, f"existing {i}")
    before = await conversations.list_conversations(user)
    with pytest.raises(ConversationNotFound):
        await conversations.add_message(user, MISSING_ID, "user", "lost")
    assert await conversations.list_conversations(user) == before


class MessageInsertFailure:
    """An injected fault that replaces every INSERT into the message table with a statement the database rejects."""

    def __init__(self, database: Database) -> None:
        self._engine = database.engine.sync_engine
        self._listening = False

    @staticmethod
    def _replace(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> Any:
        if statement.lstrip().upper().startswith("INSERT INTO MESSAGE"):
            return "SELECT missing_column FROM message", ()
        return statement, parameters

    def start(self) -> None:
        event.listen(self._engine, "before_cursor_execute", self._replace, retval=True)
        self._listening = True

    def stop(self) -> None:
        if self._listening:
            event.remove(self._engine, "before_cursor_execute", self._replace)
            self._listening = False


@pytest.fixture
def message_insert_failure(database: Database) -> Iterator[MessageInsertFailure]:
    failure = MessageInsertFailure(database)
    yield failure
    failure.stop()


async def test_failed_message_insert_rolls_back_conversation_touch(
    conversations: ConversationRepository, user_ids: tuple[str, str], message_insert_failure: MessageInsertFailure
) -> None:
    # add_message moves updated_at before it inserts, so a failed insert must undo that move.
    user, _ = user_ids
    conversation = await conversations.create_conversation(user, "chat")
    message_insert_failure.start()
    with pytest.raises(StoreError):
        await conversations.add_message(user, conversation.id, "user", "never stored")
    assert await conversations.get_conversation(user, conversation.id) == conversation


async def test_failed_message_insert_writes_no_message(
    conversations: ConversationRepository,
    database: Database,
    user_ids: tuple[str, str],
    message_insert_failure: MessageInsertFailure,
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user, "chat")
    await conversations.add_message(user, conversation.id, "user", "stored before the failure")
    message_insert_failure.start()
    with pytest.raises(StoreError):
        await conversations.add_message(user, conversation.id, "user", "never stored")
    message_insert_failure.stop()
    assert await _count(database, user, Message.__table__) == 1


async def test_failed_message_insert_error_hides_sql(
    conversations: ConversationRepository, user_ids: tuple[str, str], message_insert_failure: MessageInsertFailure
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user, "chat")
    message_insert_failure.start()
    with pytest.raises(StoreError) as caught:
        await conversations.add_message(user, conversation.id, "user", "never stored")
    assert "missing_column" not in str(caught.value)


# --- migrations --------------------------------------------------------------------------------


@pytest.fixture
async def fresh_engine(backend: str, sqlite_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    """Create an engine on a new, empty database. The conftest fixtures drop PostgreSQL ones at session end."""
    url = await make_database_url(backend, sqlite_dir, request)
    engine = create_engine(database_config(url))
    yield engine
    await engine.dispose()


async def _table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


async def test_upgrade_creates_tables_at_head(fresh_engine: AsyncEngine) -> None:
    await migrate.upgrade(fresh_engine)
    assert await migrate.current_revision(fresh_engine) == migrate.head_revision()
    assert await _table_names(fresh_engine) == TABLES


async def test_downgrade_to_base_removes_tables(fresh_engine: AsyncEngine) -> None:
    await migrate.upgrade(fresh_engine)
    await migrate.downgrade(fresh_engine, "base")
    assert await migrate.current_revision(fresh_engine) is None
    assert await _table_names(fresh_engine) == set()


async def test_migration_round_trip_restores_schema(fresh_engine: AsyncEngine) -> None:
    await migrate.upgrade(fresh_engine)
    await migrate.downgrade(fresh_engine, "base")
    await migrate.upgrade(fresh_engine)
    assert await migrate.current_revision(fresh_engine) == migrate.head_revision()
    assert await _table_names(fresh_engine) == TABLES


async def test_schema_after_round_trip_matches_models(fresh_engine: AsyncEngine) -> None:
    await migrate.upgrade(fresh_engine)
    await migrate.downgrade(fresh_engine, "base")
    await migrate.upgrade(fresh_engine)
    await migrate.check(fresh_engine)


async def test_migrated_schema_matches_models(fresh_engine: AsyncEngine) -> None:
    await migrate.upgrade(fresh_engine)
    await migrate.check(fresh_engine)


async def test_store_works_after_round_trip(fresh_engine: AsyncEngine) -> None:
    await migrate.upgrade(fresh_engine)
    await migrate.downgrade(fresh_engine, "base")
    await migrate.upgrade(fresh_engine)
    repository = TaskRepository(Database(fresh_engine))
    created = await repository.create_task("user-migrated", {"title": "after round trip", "idempotency_key": "k"})
    assert await repository.create_task("user-migrated", {"title": "again", "idempotency_key": "k"}) == created


async def test_message_retry_keeps_conversation_order(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user = user_ids[0]
    first = await conversations.create_conversation(user, "first")
    second = await conversations.create_conversation(user, "second")
    original = await conversations.add_message(user, first.id, "user", "hello", idempotency_key="m-1")
    await conversations.add_message(user, second.id, "user", "later")

    retried = await conversations.add_message(user, first.id, "user", "hello", idempotency_key="m-1")
    listed = await conversations.list_conversations(user)

    assert retried.id == original.id
    assert [item.id for item in listed.items] == [second.id, first.id]


async def test_message_key_from_other_conversation_rejected(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user = user_ids[0]
    first = await conversations.create_conversation(user, "first")
    second = await conversations.create_conversation(user, "second")
    await conversations.add_message(user, first.id, "user", "hello", idempotency_key="m-2")

    with pytest.raises(InvalidInput) as raised:
        await conversations.add_message(user, second.id, "user", "hello", idempotency_key="m-2")
    history = await conversations.get_history(user, second.id)

    assert raised.value.field == "idempotency_key"
    assert str(first.id) in raised.value.message
    assert history.items == []
