"""Every tool through an in-process MCP client, on SQLite and PostgreSQL.

The client acts for a user the way a verified access token would; the tools never take a
user id as an argument. Each error text is checked for SQL, DSNs, tracebacks and the other
user's data.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from server.app import TaskstoreServer
from store import StoreError, TaskRepository
from tests.support.servers import in_process_client

MISSING_ID = 9_000_000_000_000
# Words and fragments that only a leaked SQL statement, DSN or traceback would carry.
LEAK_MARKERS = (
    "SELECT",
    "INSERT",
    "UPDATE task",
    "DELETE FROM",
    " WHERE ",
    "postgresql://",
    "postgresql+asyncpg",
    "sqlite://",
    "sqlite+aiosqlite",
    "Traceback",
    'File "',
    "asyncpg",
    "sqlalchemy",
    "aiosqlite",
)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def leaks(text: str, *private: str) -> list[str]:
    """Return what ``text`` gives away: SQL, DSN or traceback fragments, or any of ``private``."""
    found = [marker for marker in LEAK_MARKERS if marker in text]
    return found + [value for value in private if value and value in text]


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def fails(client: Client, tool: str, arguments: dict[str, Any], *private: str) -> str:
    """Call ``tool`` expecting an error result; return its text after checking it leaks nothing."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    message = text_of(result)
    assert leaks(message, *private) == []
    return message


async def snapshot(client: Client) -> dict[str, Any]:
    """Everything the client's user can see, to show that a rejected call changed nothing."""
    conversations = (await ok(client, "list_conversations", limit=200))["conversations"]
    return {
        "tasks": (await ok(client, "list_tasks", status="all", limit=200))["tasks"],
        "deleted": (await ok(client, "list_deleted_tasks", limit=200))["tasks"],
        "conversations": conversations,
        "histories": [
            (await ok(client, "get_history", conversation_id=conversation["id"], limit=200))["messages"]
            for conversation in conversations
        ],
    }


def as_user(server: TaskstoreServer, user_id: str, **token: Any):  # type: ignore[no-untyped-def]
    return in_process_client(server, user_id, **token)


# --- create_task ---------------------------------------------------------------------------------


async def test_create_task_returns_the_stored_task(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(
            client, "create_task", title="  Buy milk  ", description="2 litres", priority="high",
            due_at="2026-12-05T18:00:00+01:00",
        )
        fetched = await ok(client, "get_task", task_id=task["id"])
    assert isinstance(task["id"], int)
    assert task["title"] == "Buy milk"
    assert task["description"] == "2 litres"
    assert task["priority"] == "high"
    assert task["due_at"] == "2026-12-05T17:00:00Z"
    assert task["completed"] is False
    assert task["completed_at"] is None
    assert task["version"] == 1
    assert task["deleted_at"] is None
    assert fetched == task


async def test_create_task_idempotency_key_returns_first(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        first = await ok(client, "create_task", title="Once", idempotency_key="key-1")
        second = await ok(client, "create_task", title="Twice", idempotency_key="key-1")
        listed = await ok(client, "list_tasks")
    assert second == first
    assert listed["count"] == 1


async def test_create_task_keeps_json_like_title(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="[1, 2]")
    assert task["title"] == "[1, 2]"


async def test_create_task_rejects_a_title_over_255_characters(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_task", {"title": "x" * 256})
    assert "title" in message
    assert "255" in message


async def test_create_task_rejects_a_blank_title(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_task", {"title": "   "})
    assert "title" in message


async def test_create_task_rejects_a_description_over_10000_characters(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_task", {"title": "t", "description": "x" * 10_001})
    assert "description" in message
    assert "10000" in message


async def test_create_task_rejects_due_at_without_offset(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_task", {"title": "t", "due_at": "2026-12-05T17:00:00"})
    assert "due_at" in message
    assert "offset" in message


async def test_create_task_rejects_an_unknown_priority(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_task", {"title": "t", "priority": "urgent"})
    assert "priority" in message
    assert "'low', 'medium' or 'high'" in message


async def test_create_task_reports_a_missing_title(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_task", {})
    assert message == "Missing required argument title."


# --- create_tasks --------------------------------------------------------------------------------


async def test_create_tasks_results_in_request_order(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        batch = await ok(client, "create_tasks", tasks=[{"title": "One"}, {"title": "Two", "priority": "low"}])
    assert batch["succeeded"] == 2
    assert batch["failed"] == 0
    assert [item["index"] for item in batch["results"]] == [0, 1]
    assert [item["task"]["title"] for item in batch["results"]] == ["One", "Two"]
    assert [item["task_id"] for item in batch["results"]] == [item["task"]["id"] for item in batch["results"]]


async def test_create_tasks_keeps_valid_items(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        batch = await ok(client, "create_tasks", tasks=[{"title": "Good"}, {"title": "x" * 256}, {"title": "Also"}])
        listed = await ok(client, "list_tasks")
    bad = batch["results"][1]
    assert batch["succeeded"] == 2
    assert batch["failed"] == 1
    assert bad["ok"] is False
    assert bad["task"] is None
    assert "title" in bad["error"]
    assert "255" in bad["error"]
    assert leaks(bad["error"]) == []
    assert [task["title"] for task in listed["tasks"]] == ["Good", "Also"]


async def test_create_tasks_bad_values_fail_per_item(mcp_server, user_ids):
    items = [{"title": "Good"}, {"title": "Urgent", "priority": "urgent"}, {"title": "Naive", "due_at": "2026-12-05T10:00:00"}]
    async with as_user(mcp_server, user_ids[0]) as client:
        batch = await ok(client, "create_tasks", tasks=items)
        listed = await ok(client, "list_tasks", status="all")
    assert batch["succeeded"] == 1
    assert batch["failed"] == 2
    assert "priority" in batch["results"][1]["error"]
    assert "offset" in batch["results"][2]["error"]
    assert [task["title"] for task in listed["tasks"]] == ["Good"]


async def test_create_tasks_rejects_more_than_50_items(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_tasks", {"tasks": [{"title": f"t{n}"} for n in range(51)]})
        listed = await ok(client, "list_tasks")
    assert "tasks" in message
    assert "50" in message
    assert listed["count"] == 0


async def test_create_tasks_rejects_an_empty_list(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_tasks", {"tasks": []})
    assert "tasks" in message
    assert "at least 1" in message


# --- list_tasks ----------------------------------------------------------------------------------


async def test_list_tasks_returns_pending_tasks_oldest_first(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        first = await ok(client, "create_task", title="First")
        done = await ok(client, "create_task", title="Done")
        third = await ok(client, "create_task", title="Third")
        await ok(client, "complete_task", task_id=done["id"])
        listed = await ok(client, "list_tasks")
    assert [task["id"] for task in listed["tasks"]] == [first["id"], third["id"]]
    assert listed["count"] == 2
    assert listed["has_more"] is False
    assert listed["next_cursor"] is None
    assert listed["note"] is None


async def test_list_tasks_filters_by_status_completed(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        await ok(client, "create_task", title="Open")
        done = await ok(client, "create_task", title="Done")
        await ok(client, "complete_task", task_id=done["id"])
        listed = await ok(client, "list_tasks", status="completed")
    assert [task["id"] for task in listed["tasks"]] == [done["id"]]


async def test_list_tasks_searches_title_literally(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        await ok(client, "create_task", title="50% off")
        await ok(client, "create_task", title="500 off")
        listed = await ok(client, "list_tasks", search="0%")
    assert [task["title"] for task in listed["tasks"]] == ["50% off"]


async def test_list_tasks_pages_with_next_cursor(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        created = [(await ok(client, "create_task", title=f"Task {n}"))["id"] for n in range(3)]
        first = await ok(client, "list_tasks", limit=2)
        second = await ok(client, "list_tasks", limit=2, cursor=first["next_cursor"])
    assert [task["id"] for task in first["tasks"]] == created[:2]
    assert first["has_more"] is True
    assert isinstance(first["next_cursor"], str)
    assert [task["id"] for task in second["tasks"]] == created[2:]
    assert second["has_more"] is False
    assert second["next_cursor"] is None


async def test_list_tasks_cuts_long_descriptions(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        await ok(client, "create_task", title="Long", description="d" * 300)
        listed = await ok(client, "list_tasks")
    assert listed["tasks"][0]["description"] == "d" * 200
    assert listed["tasks"][0]["description_truncated"] is True


async def test_list_tasks_empty_note_for_new_user(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        listed = await ok(client, "list_tasks")
    assert listed["tasks"] == []
    assert listed["count"] == 0
    assert "create_task" in listed["note"]
    assert "No tasks match" not in listed["note"]


async def test_list_tasks_notes_the_filters_that_matched_nothing(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        await ok(client, "create_task", title="Low", priority="low")
        listed = await ok(client, "list_tasks", priority="high")
    assert listed["tasks"] == []
    assert "priority=high" in listed["note"]


@pytest.mark.parametrize("limit", [0, 201])
async def test_list_tasks_rejects_invalid_limit(mcp_server, user_ids, limit):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "list_tasks", {"limit": limit})
    assert "limit" in message
    assert "200" in message


async def test_list_tasks_rejects_a_forged_cursor(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "list_tasks", {"cursor": "not-a-cursor"})
    assert "cursor" in message


async def test_list_tasks_rejects_a_search_over_200_characters(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "list_tasks", {"search": "s" * 201})
    assert "search" in message
    assert "200" in message


# --- get_task ------------------------------------------------------------------------------------


async def test_get_task_returns_the_whole_description(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        created = await ok(client, "create_task", title="Long", description="d" * 300)
        task = await ok(client, "get_task", task_id=created["id"])
    assert task["description"] == "d" * 300
    assert task["description_truncated"] is False


async def test_get_task_reports_a_missing_task(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "get_task", {"task_id": MISSING_ID})
    assert f"Task {MISSING_ID} was not found" in message


async def test_get_task_deleted_is_not_found(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Gone")
        await ok(client, "delete_task", task_id=task["id"])
        message = await fails(client, "get_task", {"task_id": task["id"]})
    assert "not found" in message
    assert "list_deleted_tasks" in message


async def test_get_task_rejects_a_non_integer_id(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "get_task", {"task_id": "abc"})
    assert "task_id" in message
    assert "integer" in message


# --- update_task ---------------------------------------------------------------------------------


async def test_update_task_keeps_omitted_fields(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(
            client, "create_task", title="Old", description="notes", priority="high", due_at="2026-12-05T17:00:00Z"
        )
        updated = await ok(client, "update_task", task_id=task["id"], title="New")
    assert updated["title"] == "New"
    assert updated["description"] == "notes"
    assert updated["priority"] == "high"
    assert updated["due_at"] == "2026-12-05T17:00:00Z"
    assert updated["version"] == 2


async def test_update_task_clears_fields_sent_as_null(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(
            client, "create_task", title="Keep", description="notes", priority="high", due_at="2026-12-05T17:00:00Z"
        )
        updated = await ok(client, "update_task", task_id=task["id"], description=None, priority=None, due_at=None)
    assert updated["title"] == "Keep"
    assert updated["description"] is None
    assert updated["priority"] is None
    assert updated["due_at"] is None


async def test_update_task_rejects_null_title(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Keep")
        message = await fails(client, "update_task", {"task_id": task["id"], "title": None})
        after = await ok(client, "get_task", task_id=task["id"])
    assert "title" in message
    assert after == task


async def test_update_task_rejects_a_title_over_255_characters(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Keep")
        message = await fails(client, "update_task", {"task_id": task["id"], "title": "x" * 256})
    assert "title" in message
    assert "255" in message


async def test_update_task_rejects_no_changes(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Keep")
        message = await fails(client, "update_task", {"task_id": task["id"]})
    assert "nothing to update" in message.lower()


async def test_update_task_version_conflict(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="v1")
        await ok(client, "update_task", task_id=task["id"], title="v2")
        message = await fails(client, "update_task", {"task_id": task["id"], "title": "lost", "expected_version": 1})
        after = await ok(client, "get_task", task_id=task["id"])
    assert "at version 2, not 1" in message
    assert "expected_version=2" in message
    assert after["title"] == "v2"


async def test_update_task_matching_version_applies(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="v1")
        updated = await ok(client, "update_task", task_id=task["id"], title="v2", expected_version=1)
    assert updated["version"] == 2


async def test_update_task_reports_a_missing_task(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "update_task", {"task_id": MISSING_ID, "title": "x"})
    assert f"Task {MISSING_ID} was not found" in message


# --- complete_task -------------------------------------------------------------------------------


async def test_complete_task_marks_the_task_done(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Do it")
        done = await ok(client, "complete_task", task_id=task["id"])
    assert done["completed"] is True
    assert done["completed_at"] is not None
    assert done["version"] == 2


async def test_complete_task_twice_leaves_the_task_unchanged(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Do it")
        done = await ok(client, "complete_task", task_id=task["id"])
        again = await ok(client, "complete_task", task_id=task["id"])
    assert again == done


async def test_complete_task_with_completed_false_reopens_it(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Do it")
        await ok(client, "complete_task", task_id=task["id"])
        reopened = await ok(client, "complete_task", task_id=task["id"], completed=False)
    assert reopened["completed"] is False
    assert reopened["completed_at"] is None
    assert reopened["version"] == 3


async def test_complete_task_version_conflict(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="v1")
        await ok(client, "update_task", task_id=task["id"], title="v2")
        message = await fails(client, "complete_task", {"task_id": task["id"], "expected_version": 1})
        after = await ok(client, "get_task", task_id=task["id"])
    assert "at version 2, not 1" in message
    assert after["completed"] is False


async def test_complete_task_reports_a_missing_task(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "complete_task", {"task_id": MISSING_ID})
    assert f"Task {MISSING_ID} was not found" in message


# --- complete_tasks ------------------------------------------------------------------------------


async def test_complete_tasks_reports_each_id_with_one_missing(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        first = await ok(client, "create_task", title="One")
        second = await ok(client, "create_task", title="Two")
        batch = await ok(client, "complete_tasks", task_ids=[first["id"], MISSING_ID, second["id"]])
        completed = await ok(client, "list_tasks", status="completed")
    results = batch["results"]
    assert batch["succeeded"] == 2
    assert batch["failed"] == 1
    assert [item["task_id"] for item in results] == [first["id"], MISSING_ID, second["id"]]
    assert [item["ok"] for item in results] == [True, False, True]
    assert f"Task {MISSING_ID} was not found" in results[1]["error"]
    assert [task["id"] for task in completed["tasks"]] == [first["id"], second["id"]]


async def test_complete_tasks_with_completed_false_reopens_them(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="One")
        await ok(client, "complete_task", task_id=task["id"])
        batch = await ok(client, "complete_tasks", task_ids=[task["id"]], completed=False)
    assert batch["results"][0]["task"]["completed"] is False


async def test_complete_tasks_rejects_more_than_50_ids(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "complete_tasks", {"task_ids": list(range(1, 52))})
    assert "task_ids" in message
    assert "50" in message


# --- delete_task, restore_task, list_deleted_tasks -----------------------------------------------


async def test_delete_task_moves_the_task_to_the_trash(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Trash me")
        deleted = await ok(client, "delete_task", task_id=task["id"])
        active = await ok(client, "list_tasks", status="all")
        trash = await ok(client, "list_deleted_tasks")
    assert deleted["task"]["id"] == task["id"]
    assert deleted["task"]["deleted_at"] is not None
    assert f"restore_task with task_id={task['id']}" in deleted["undo"]
    assert active["tasks"] == []
    assert [item["id"] for item in trash["tasks"]] == [task["id"]]


async def test_delete_task_version_conflict(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="v1")
        await ok(client, "update_task", task_id=task["id"], title="v2")
        message = await fails(client, "delete_task", {"task_id": task["id"], "expected_version": 1})
        after = await ok(client, "get_task", task_id=task["id"])
    assert "at version 2, not 1" in message
    assert after["deleted_at"] is None


async def test_delete_task_reports_a_missing_task(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "delete_task", {"task_id": MISSING_ID})
    assert f"Task {MISSING_ID} was not found" in message


async def test_restore_task_brings_a_deleted_task_back(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Back")
        await ok(client, "delete_task", task_id=task["id"])
        restored = await ok(client, "restore_task", task_id=task["id"])
        active = await ok(client, "list_tasks")
        trash = await ok(client, "list_deleted_tasks")
    assert restored["id"] == task["id"]
    assert restored["deleted_at"] is None
    assert [item["id"] for item in active["tasks"]] == [task["id"]]
    assert trash["tasks"] == []


async def test_restore_task_active_is_not_found(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        task = await ok(client, "create_task", title="Active")
        message = await fails(client, "restore_task", {"task_id": task["id"]})
    assert f"Task {task['id']} was not found" in message


async def test_list_deleted_tasks_shows_the_latest_deletion_first(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        first = await ok(client, "create_task", title="First")
        second = await ok(client, "create_task", title="Second")
        await ok(client, "delete_task", task_id=first["id"])
        await ok(client, "delete_task", task_id=second["id"])
        trash = await ok(client, "list_deleted_tasks")
    assert [task["id"] for task in trash["tasks"]] == [second["id"], first["id"]]
    assert trash["note"] is None


async def test_list_deleted_tasks_pages_with_next_cursor(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        ids = [(await ok(client, "create_task", title=f"T{n}"))["id"] for n in range(3)]
        for task_id in ids:
            await ok(client, "delete_task", task_id=task_id)
        first = await ok(client, "list_deleted_tasks", limit=2)
        second = await ok(client, "list_deleted_tasks", limit=2, cursor=first["next_cursor"])
    assert [task["id"] for task in first["tasks"]] == [ids[2], ids[1]]
    assert first["has_more"] is True
    assert [task["id"] for task in second["tasks"]] == [ids[0]]
    assert second["has_more"] is False
    assert second["next_cursor"] is None


async def test_list_deleted_tasks_notes_an_empty_trash(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        trash = await ok(client, "list_deleted_tasks")
    assert trash["tasks"] == []
    assert trash["note"] == "The trash is empty."


async def test_list_deleted_tasks_rejects_a_limit_over_200(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "list_deleted_tasks", {"limit": 201})
    assert "limit" in message
    assert "200" in message


# --- conversations -------------------------------------------------------------------------------


async def test_create_conversation_returns_it_with_its_title(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation", title="  Planning  ")
        untitled = await ok(client, "create_conversation")
    assert isinstance(conversation["id"], int)
    assert conversation["title"] == "Planning"
    assert conversation["updated_at"] == conversation["created_at"]
    assert untitled["title"] is None


async def test_create_conversation_rejects_a_title_over_255_characters(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "create_conversation", {"title": "x" * 256})
    assert "title" in message
    assert "255" in message


async def test_list_conversations_shows_the_latest_message_first(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        older = await ok(client, "create_conversation", title="Older")
        newer = await ok(client, "create_conversation", title="Newer")
        await ok(client, "add_message", conversation_id=older["id"], role="user", content="bump")
        listed = await ok(client, "list_conversations")
    assert [item["id"] for item in listed["conversations"]] == [older["id"], newer["id"]]
    assert listed["count"] == 2
    assert listed["note"] is None


async def test_list_conversations_pages_with_next_cursor(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        ids = [(await ok(client, "create_conversation", title=f"C{n}"))["id"] for n in range(3)]
        first = await ok(client, "list_conversations", limit=2)
        second = await ok(client, "list_conversations", limit=2, cursor=first["next_cursor"])
    seen = [item["id"] for item in first["conversations"] + second["conversations"]]
    assert first["has_more"] is True
    assert isinstance(first["next_cursor"], str)
    assert second["has_more"] is False
    assert second["next_cursor"] is None
    assert sorted(seen) == sorted(ids)


async def test_list_conversations_notes_an_empty_list(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        listed = await ok(client, "list_conversations")
    assert listed["conversations"] == []
    assert "create_conversation" in listed["note"]


async def test_list_conversations_rejects_a_forged_cursor(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "list_conversations", {"cursor": "bm9wZQ"})
    assert "cursor" in message


async def test_add_message_echo_cut_to_200(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        message = await ok(client, "add_message", conversation_id=conversation["id"], role="assistant", content="m" * 300)
        history = await ok(client, "get_history", conversation_id=conversation["id"])
    assert message["conversation_id"] == conversation["id"]
    assert message["role"] == "assistant"
    assert message["content"] == "m" * 200
    assert message["content_truncated"] is True
    assert history["messages"][0]["content"] == "m" * 300


async def test_add_message_idempotency_key_returns_first(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        first = await ok(client, "add_message", conversation_id=conversation["id"], role="user", content="hi",
                         idempotency_key="msg-1")
        retry = await ok(client, "add_message", conversation_id=conversation["id"], role="user", content="hi",
                         idempotency_key="msg-1")
        history = await ok(client, "get_history", conversation_id=conversation["id"])
    assert retry == first
    assert history["count"] == 1


async def test_add_message_rejects_an_unknown_role(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        message = await fails(client, "add_message", {"conversation_id": conversation["id"], "role": "bot", "content": "x"})
    assert "role" in message
    assert "'user', 'assistant', 'system' or 'tool'" in message


async def test_add_message_rejects_empty_content(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        message = await fails(client, "add_message", {"conversation_id": conversation["id"], "role": "user", "content": ""})
    assert "content" in message
    assert "at least 1" in message


async def test_add_message_reports_a_missing_conversation(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "add_message", {"conversation_id": MISSING_ID, "role": "user", "content": "x"})
    assert f"Conversation {MISSING_ID} was not found" in message


async def test_get_history_returns_the_latest_messages_oldest_first(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        for text in ("one", "two", "three"):
            await ok(client, "add_message", conversation_id=conversation["id"], role="user", content=text)
        latest = await ok(client, "get_history", conversation_id=conversation["id"], limit=2)
        older = await ok(client, "get_history", conversation_id=conversation["id"], limit=2, before=latest["next_cursor"])
    assert latest["conversation_id"] == conversation["id"]
    assert [item["content"] for item in latest["messages"]] == ["two", "three"]
    assert latest["has_more"] is True
    assert [item["content"] for item in older["messages"]] == ["one"]
    assert older["has_more"] is False
    assert older["next_cursor"] is None


async def test_get_history_cuts_long_messages(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        await ok(client, "add_message", conversation_id=conversation["id"], role="user", content="abcdefghijkl")
        history = await ok(client, "get_history", conversation_id=conversation["id"], max_chars_per_message=5)
    assert history["messages"][0]["content"] == "abcde"
    assert history["messages"][0]["content_truncated"] is True


async def test_get_history_rejects_zero_max_chars(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        message = await fails(client, "get_history", {"conversation_id": conversation["id"], "max_chars_per_message": 0})
    assert "max_chars_per_message" in message
    assert "greater than or equal to 1" in message


async def test_get_history_rejects_a_limit_over_200(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        message = await fails(client, "get_history", {"conversation_id": conversation["id"], "limit": 201})
    assert "limit" in message
    assert "200" in message


async def test_get_history_rejects_a_forged_before_cursor(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation")
        message = await fails(client, "get_history", {"conversation_id": conversation["id"], "before": "zz"})
    assert "before" in message


async def test_get_history_reports_a_missing_conversation(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "get_history", {"conversation_id": MISSING_ID})
    assert f"Conversation {MISSING_ID} was not found" in message


async def test_delete_conversation_hides_it_and_its_history(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        conversation = await ok(client, "create_conversation", title="Bye")
        await ok(client, "add_message", conversation_id=conversation["id"], role="user", content="x")
        deleted = await ok(client, "delete_conversation", conversation_id=conversation["id"])
        listed = await ok(client, "list_conversations")
        message = await fails(client, "get_history", {"conversation_id": conversation["id"]})
    assert deleted["conversation"]["id"] == conversation["id"]
    assert deleted["note"]
    assert listed["conversations"] == []
    assert "not found" in message


async def test_delete_conversation_reports_a_missing_conversation(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "delete_conversation", {"conversation_id": MISSING_ID})
    assert f"Conversation {MISSING_ID} was not found" in message


# --- tokens: scopes and expiry -------------------------------------------------------------------

READ_TOOLS = ("list_tasks", "get_task", "list_deleted_tasks", "list_conversations", "get_history")
WRITE_TOOLS = (
    "create_task", "create_tasks", "update_task", "complete_task", "complete_tasks", "delete_task",
    "restore_task", "create_conversation", "add_message", "delete_conversation",
)


def valid_arguments(tool: str, task_id: int, deleted_id: int, conversation_id: int) -> dict[str, Any]:
    """Arguments that would succeed for the owner of these rows."""
    return {
        "create_task": {"title": "new"},
        "create_tasks": {"tasks": [{"title": "new"}]},
        "list_tasks": {},
        "get_task": {"task_id": task_id},
        "update_task": {"task_id": task_id, "title": "changed"},
        "complete_task": {"task_id": task_id},
        "complete_tasks": {"task_ids": [task_id]},
        "delete_task": {"task_id": task_id},
        "restore_task": {"task_id": deleted_id},
        "list_deleted_tasks": {},
        "create_conversation": {"title": "new"},
        "list_conversations": {},
        "add_message": {"conversation_id": conversation_id, "role": "user", "content": "new"},
        "get_history": {"conversation_id": conversation_id},
        "delete_conversation": {"conversation_id": conversation_id},
    }[tool]


async def seed(client: Client, marker: str) -> tuple[int, int, int]:
    """Give the client's user an active task, a deleted task and a conversation with a message."""
    task = await ok(client, "create_task", title=f"{marker} task", description=f"{marker} notes")
    deleted = await ok(client, "create_task", title=f"{marker} deleted")
    await ok(client, "delete_task", task_id=deleted["id"])
    conversation = await ok(client, "create_conversation", title=f"{marker} chat")
    await ok(client, "add_message", conversation_id=conversation["id"], role="user", content=f"{marker} message")
    return task["id"], deleted["id"], conversation["id"]


async def test_every_tool_is_covered_by_the_token_tests(mcp_server):
    async with as_user(mcp_server, "coverage-check") as client:
        listed = await client.list_tools()
    assert {tool.name for tool in listed.tools} == set(READ_TOOLS) | set(WRITE_TOOLS)


@pytest.mark.parametrize("tool", WRITE_TOOLS)
async def test_read_only_token_rejected_on_write(mcp_server, user_ids, tool):
    async with as_user(mcp_server, user_ids[0]) as owner:
        ids = await seed(owner, "mine")
        before = await snapshot(owner)
    async with as_user(mcp_server, user_ids[0], scopes=["tasks:read"]) as reader:
        message = await fails(reader, tool, valid_arguments(tool, *ids))
    async with as_user(mcp_server, user_ids[0]) as owner:
        after = await snapshot(owner)
    assert "read-only" in message
    assert "tasks:write" in message
    assert after == before


@pytest.mark.parametrize("tool", READ_TOOLS)
async def test_read_only_token_allowed_on_read(mcp_server, user_ids, tool):
    async with as_user(mcp_server, user_ids[0]) as owner:
        ids = await seed(owner, "mine")
    async with as_user(mcp_server, user_ids[0], scopes=["tasks:read"]) as reader:
        result = await reader.call_tool(tool, valid_arguments(tool, *ids))
    assert not result.is_error, text_of(result)


@pytest.mark.parametrize("tool", READ_TOOLS + WRITE_TOOLS)
async def test_expired_token_is_rejected(mcp_server, user_ids, tool):
    async with as_user(mcp_server, user_ids[0]) as owner:
        ids = await seed(owner, "mine")
        before = await snapshot(owner)
    async with as_user(mcp_server, user_ids[0], expires_at=int(time.time()) - 60) as expired:
        message = await fails(expired, tool, valid_arguments(tool, *ids))
    async with as_user(mcp_server, user_ids[0]) as owner:
        after = await snapshot(owner)
    assert "expired" in message
    assert after == before


# --- isolation between users ---------------------------------------------------------------------

ID_TOOLS = (
    "get_task", "update_task", "complete_task", "complete_tasks", "delete_task", "restore_task",
    "add_message", "get_history", "delete_conversation",
)


def foreign_call(tool: str, task_id: int, deleted_id: int, conversation_id: int) -> tuple[dict[str, Any], int]:
    """Arguments that aim at another user's row, and the id they name."""
    arguments = valid_arguments(tool, task_id, deleted_id, conversation_id)
    target = {"restore_task": deleted_id, "add_message": conversation_id, "get_history": conversation_id,
              "delete_conversation": conversation_id}.get(tool, task_id)
    return arguments, target


def missing_call(tool: str) -> dict[str, Any]:
    return valid_arguments(tool, MISSING_ID, MISSING_ID, MISSING_ID)


async def not_found_text(client: Client, tool: str, arguments: dict[str, Any], target: int, *private: str) -> str:
    """The not-found text of a call, with the id it names replaced so two ids compare equal."""
    if tool == "complete_tasks":
        batch = await ok(client, tool, **arguments)
        message = batch["results"][0]["error"]
        assert leaks(message, *private) == []
    else:
        message = await fails(client, tool, arguments, *private)
    return message.replace(str(target), "<id>")


@pytest.mark.parametrize("tool", ID_TOOLS)
async def test_foreign_id_is_not_found(mcp_server, user_ids, tool):
    owner_id, other_id = user_ids
    marker = f"secret-{uuid.uuid4().hex[:8]}"
    async with as_user(mcp_server, owner_id) as owner:
        ids = await seed(owner, marker)
        before = await snapshot(owner)
    arguments, target = foreign_call(tool, *ids)
    async with as_user(mcp_server, other_id) as other:
        foreign = await not_found_text(other, tool, arguments, target, owner_id, marker)
        missing = await not_found_text(other, tool, missing_call(tool), MISSING_ID, owner_id, marker)
    async with as_user(mcp_server, owner_id) as owner:
        after = await snapshot(owner)
    assert "not found" in foreign
    assert foreign == missing
    assert after == before


async def test_lists_show_nothing_of_another_user(mcp_server, user_ids):
    owner_id, other_id = user_ids
    async with as_user(mcp_server, owner_id) as owner:
        await seed(owner, "mine")
    async with as_user(mcp_server, other_id) as other:
        seen = await snapshot(other)
    assert seen == {"tasks": [], "deleted": [], "conversations": [], "histories": []}


async def test_another_users_cursor_reveals_nothing(mcp_server, user_ids):
    owner_id, other_id = user_ids
    async with as_user(mcp_server, owner_id) as owner:
        for n in range(3):
            await ok(owner, "create_task", title=f"mine {n}")
        page = await ok(owner, "list_tasks", limit=1)
    async with as_user(mcp_server, other_id) as other:
        listed = await ok(other, "list_tasks", cursor=page["next_cursor"])
    assert listed["tasks"] == []


@pytest.mark.parametrize("tool", READ_TOOLS + WRITE_TOOLS)
async def test_tools_reject_user_id_argument(mcp_server, user_ids, tool):
    owner_id, other_id = user_ids
    async with as_user(mcp_server, owner_id) as owner:
        ids = await seed(owner, "mine")
        before = await snapshot(owner)
    async with as_user(mcp_server, other_id) as other:
        message = await fails(other, tool, {**valid_arguments(tool, *ids), "user_id": owner_id}, owner_id)
    async with as_user(mcp_server, owner_id) as owner:
        after = await snapshot(owner)
    assert "Unknown argument 'user_id'" in message
    assert after == before


# --- failures inside the store -------------------------------------------------------------------


async def test_store_failure_hides_sql_and_dsn(mcp_server, user_ids, monkeypatch):
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError(f"SELECT * FROM task WHERE user_id = '{user_ids[1]}' on postgresql://u:pw@db/x")

    monkeypatch.setattr(TaskRepository, "get_task", broken)
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "get_task", {"task_id": 1}, user_ids[1], "pw@db")
    assert "get_task" in message


async def test_database_error_message_is_generic(mcp_server, user_ids, monkeypatch):
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise StoreError("list_tasks failed because of a database error")

    monkeypatch.setattr(TaskRepository, "get_active_tasks", broken)
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "list_tasks", {})
    assert message.startswith("Internal error while running list_tasks")


async def test_unknown_tool_is_named_in_the_error(mcp_server, user_ids):
    async with as_user(mcp_server, user_ids[0]) as client:
        message = await fails(client, "drop_tables", {})
    assert "Unknown tool 'drop_tables'" in message
