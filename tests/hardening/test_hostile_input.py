"""Hostile and odd inputs sent through the MCP tools, on both backends.

Each row of ``CASES`` is one tool call with a note. A row either expects a tool error
containing a given phrase, with the caller's rows unchanged, or a stored value that reads
back exactly as sent (compared as UTF-8 bytes). Every reply is checked for things that must
never reach a client: SQL, driver names, the database URL or file, paths and tracebacks.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from server.app import TaskstoreServer
from store import ConversationRepository, Database, TaskRepository
from store.conversations import conversation_table, message_table
from store.tasks import task_table
from tests.support.servers import in_process_client

Args = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
Check = Callable[[Client, CallToolResult, dict[str, Any]], Awaitable[None]]

MEGABYTE = 1_000_000
# Right-to-left Arabic and Hebrew, a right-to-left override, combining accents, a ZWJ family,
# a flag and a four-byte CJK character: all must come back as the same bytes.
UNICODE_TEXT = "مرحبا עולם \u202eevil\u202c e\u0301 a\u0308\u0304 👩\u200d👩\u200d👧 🇺🇳 𠜎"
SQL_TEXT = "'); DROP TABLE task; -- \" OR 1=1; SELECT * FROM message"


def forged_cursor(*values: object) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- checks of stored values -----------------------------------------------------------------


def task_field_reads_back(name: str, value: object) -> Check:
    """The created task's field, read again with get_task, equals ``value`` (as bytes for text)."""

    async def check(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
        created = result.structured_content
        assert created is not None
        again = await client.call_tool("get_task", {"task_id": created["id"]})
        stored = again.structured_content
        assert stored is not None
        assert created[name] == value
        assert stored[name] == value
        if isinstance(value, str):
            assert stored[name].encode("utf-8") == value.encode("utf-8")

    return check


def message_reads_back(value: str) -> Check:
    async def check(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
        history = await client.call_tool(
            "get_history", {"conversation_id": ctx["conversation"], "max_chars_per_message": 100_000}
        )
        assert history.structured_content is not None
        messages = history.structured_content["messages"]
        assert len(messages) == 1
        assert messages[0]["content"].encode("utf-8") == value.encode("utf-8")
        assert messages[0]["content_truncated"] is False

    return check


def listed_titles(expected: list[str]) -> Check:
    async def check(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
        assert result.structured_content is not None
        assert [task["title"] for task in result.structured_content["tasks"]] == expected

    return check


def listed_count(expected: int, *, has_more: bool) -> Check:
    async def check(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
        assert result.structured_content is not None
        assert result.structured_content["count"] == expected
        assert result.structured_content["has_more"] is has_more

    return check


def batch_outcome(succeeded: int, failed: int) -> Check:
    async def check(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
        assert result.structured_content is not None
        assert result.structured_content["succeeded"] == succeeded
        assert result.structured_content["failed"] == failed

    return check


async def own_task_returned(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
    assert result.structured_content is not None
    assert result.structured_content["id"] == ctx["task"]


async def same_error_as_missing_task(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
    """Another user's task id gets the very sentence a never-used id gets, id aside."""
    missing = 2**62 + 7
    reference = await client.call_tool("get_task", {"task_id": missing})
    assert reference.is_error
    foreign = reply_text(result).replace(str(ctx["foreign_task"]), "ID")
    assert foreign == reply_text(reference).replace(str(missing), "ID")


async def same_error_as_missing_conversation(client: Client, result: CallToolResult, ctx: dict[str, Any]) -> None:
    missing = 2**62 + 7
    reference = await client.call_tool("get_history", {"conversation_id": missing})
    assert reference.is_error
    foreign = reply_text(result).replace(str(ctx["foreign_conversation"]), "ID")
    assert foreign == reply_text(reference).replace(str(missing), "ID")


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    note: str
    tool: str
    args: Args
    error: str | None = None
    # Change in the caller's (tasks, conversations, messages). An error must leave (0, 0, 0).
    delta: tuple[int, int, int] = (0, 0, 0)
    check: Check | None = None
    setup: frozenset[str] = field(default_factory=frozenset)


def needs(*names: str) -> frozenset[str]:
    return frozenset(names)


CREATED = (1, 0, 0)
ADDED = (0, 0, 1)

CASES = [
    # Wrong types and missing values
    Case("title as a number is not coerced to text", "create_task", {"title": 5}, "Invalid argument title"),
    Case("title as a list", "create_task", {"title": ["a"]}, "Invalid argument title"),
    Case("null title", "create_task", {"title": None}, "Invalid argument title"),
    Case("missing title", "create_task", {}, "Missing required argument title"),
    Case("empty title", "create_task", {"title": ""}, "Invalid title"),
    Case("blank title of spaces (trimmed, then empty)", "create_task", {"title": "   "}, "Invalid title"),
    Case("title that is a single tab", "create_task", {"title": "\t"}, "Invalid title"),
    Case("priority outside the enum", "create_task", {"title": "p", "priority": "urgent"}, "Invalid argument priority"),
    Case("priority as a number", "create_task", {"title": "p", "priority": 1}, "Invalid argument priority"),
    Case("boolean as a task id is not read as 1", "get_task", {"task_id": True}, "Invalid argument task_id"),
    Case("boolean as a conversation id", "get_history", {"conversation_id": True}, "Invalid argument conversation_id"),
    Case("boolean as a page size is not read as 1", "list_tasks", {"limit": True}, "Invalid argument limit"),
    Case("boolean among batch task ids", "complete_tasks", {"task_ids": [True]}, "Invalid argument task_ids"),
    Case("fractional task id", "get_task", {"task_id": 1.5}, "Invalid argument task_id"),
    Case("task id that is not a number", "get_task", {"task_id": "abc"}, "Invalid argument task_id"),
    Case("null task id", "get_task", {"task_id": None}, "Invalid argument task_id"),
    Case("numeric string id is read as that number", "get_task", lambda ctx: {"task_id": str(ctx["task"])},
         check=own_task_returned, setup=needs("task")),
    Case("update sets a null title", "update_task", lambda ctx: {"task_id": ctx["task"], "title": None},
         "must not be null", setup=needs("task")),
    Case("update with no fields", "update_task", lambda ctx: {"task_id": ctx["task"]}, "nothing to update",
         setup=needs("task")),
    Case("expected_version zero", "update_task", lambda ctx: {"task_id": ctx["task"], "title": "n", "expected_version": 0},
         "must be a positive integer", setup=needs("task")),
    Case("expected_version negative", "complete_task", lambda ctx: {"task_id": ctx["task"], "expected_version": -1},
         "must be a positive integer", setup=needs("task")),
    Case("expected_version as a boolean", "delete_task", lambda ctx: {"task_id": ctx["task"], "expected_version": True},
         "Invalid argument expected_version", setup=needs("task")),
    # Length limits, one below and one above
    Case("title of 255 characters is stored", "create_task", {"title": "t" * 255}, delta=CREATED,
         check=task_field_reads_back("title", "t" * 255)),
    Case("title of 256 characters", "create_task", {"title": "t" * 256}, "at most 255 characters"),
    Case("title of 255 after trimming spaces is stored", "create_task", {"title": "  " + "t" * 255 + "  "},
         delta=CREATED, check=task_field_reads_back("title", "t" * 255)),
    Case("description of 10,000 characters is stored", "create_task", {"title": "d", "description": "d" * 10_000},
         delta=CREATED, check=task_field_reads_back("description", "d" * 10_000)),
    Case("description of 10,001 characters", "create_task", {"title": "d", "description": "d" * 10_001},
         "at most 10000 characters"),
    Case("message of 100,000 characters is stored", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "user", "content": "c" * 100_000},
         delta=ADDED, check=message_reads_back("c" * 100_000), setup=needs("conversation")),
    Case("message of 100,001 characters", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "user", "content": "c" * 100_001},
         "at most 100000 characters", setup=needs("conversation")),
    Case("message of 100,000 four-byte characters: the limit counts characters", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "user", "content": "𠜎" * 100_000},
         delta=ADDED, check=message_reads_back("𠜎" * 100_000), setup=needs("conversation")),
    Case("empty message", "add_message", lambda ctx: {"conversation_id": ctx["conversation"], "role": "user", "content": ""},
         "Invalid content", setup=needs("conversation")),
    Case("idempotency key of 256 characters", "create_task", {"title": "k", "idempotency_key": "k" * 256},
         "at most 255 characters"),
    Case("megabyte title", "create_task", {"title": "m" * MEGABYTE}, "at most 255 characters"),
    Case("megabyte description", "create_task", {"title": "m", "description": "m" * MEGABYTE}, "at most 10000"),
    Case("megabyte message", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "user", "content": "m" * MEGABYTE},
         "at most 100000", setup=needs("conversation")),
    Case("megabyte search text", "list_tasks", {"search": "s" * MEGABYTE}, "at most 200 characters"),
    Case("megabyte cursor", "list_tasks", {"cursor": "A" * MEGABYTE}, "Invalid cursor"),
    # Control characters
    Case("NUL in a title", "create_task", {"title": "a\x00b"}, "control characters"),
    Case("NUL in a description", "create_task", {"title": "n", "description": "a\x00b"}, "must not contain NUL"),
    Case("NUL in a message", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "user", "content": "a\x00b"},
         "must not contain NUL", setup=needs("conversation")),
    Case("NUL in search text", "list_tasks", {"search": "a\x00"}, "control characters"),
    Case("NUL in an idempotency key", "create_task", {"title": "n", "idempotency_key": "k\x00"}, "control characters"),
    Case("line break in a title", "create_task", {"title": "two\nlines"}, "control characters"),
    Case("terminal escape in a description", "create_task", {"title": "e", "description": "\x1b[31mred"},
         "control characters"),
    Case("DEL character in a title", "create_task", {"title": "del\x7f"}, "control characters"),
    Case("unpaired surrogate in a title", "create_task", {"title": "a\ud800"}, "Invalid title"),
    Case("tabs and line breaks in a description are kept", "create_task",
         {"title": "lines", "description": "a\tb\r\nc\n"}, delta=CREATED,
         check=task_field_reads_back("description", "a\tb\r\nc\n")),
    # Text that must come back unchanged
    Case("right-to-left, combining marks and emoji in a title", "create_task", {"title": UNICODE_TEXT[:60]},
         delta=CREATED, check=task_field_reads_back("title", UNICODE_TEXT[:60])),
    Case("right-to-left, combining marks and emoji in a description", "create_task",
         {"title": "u", "description": UNICODE_TEXT}, delta=CREATED, check=task_field_reads_back("description", UNICODE_TEXT)),
    Case("right-to-left, combining marks and emoji in a message", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "assistant", "content": UNICODE_TEXT},
         delta=ADDED, check=message_reads_back(UNICODE_TEXT), setup=needs("conversation")),
    Case("SQL in a title is stored as text", "create_task", {"title": SQL_TEXT}, delta=CREATED,
         check=task_field_reads_back("title", SQL_TEXT)),
    Case("title that looks like a JSON object stays a string", "create_task", {"title": '{"a": 1}'}, delta=CREATED,
         check=task_field_reads_back("title", '{"a": 1}')),
    Case("title that looks like a JSON list stays a string", "create_task", {"title": "[1, 2]"}, delta=CREATED,
         check=task_field_reads_back("title", "[1, 2]")),
    Case("title that looks like a number stays a string", "create_task", {"title": "12345"}, delta=CREATED,
         check=task_field_reads_back("title", "12345")),
    Case("description 'null' stays the string, not a null", "create_task", {"title": "n", "description": "null"},
         delta=CREATED, check=task_field_reads_back("description", "null")),
    Case("description that looks like a float stays a string", "create_task", {"title": "f", "description": "1e400"},
         delta=CREATED, check=task_field_reads_back("description", "1e400")),
    Case("message that looks like JSON stays a string", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "tool", "content": '{"result": [1, 2, null]}'},
         delta=ADDED, check=message_reads_back('{"result": [1, 2, null]}'), setup=needs("conversation")),
    # Search text is matched literally
    Case("search for % matches only a literal percent", "list_tasks", {"search": "%", "status": "all"},
         check=listed_titles(["100% done"]), setup=needs("search")),
    Case("search for _ matches only a literal underscore", "list_tasks", {"search": "_", "status": "all"},
         check=listed_titles(["a_b"]), setup=needs("search")),
    Case("search for a backslash matches only a literal backslash", "list_tasks", {"search": "\\", "status": "all"},
         check=listed_titles(["back\\slash"]), setup=needs("search")),
    Case("search with SQL finds nothing and breaks nothing", "list_tasks", {"search": "' OR 1=1 --", "status": "all"},
         check=listed_titles([]), setup=needs("search")),
    Case("empty search text", "list_tasks", {"search": ""}, "Invalid search"),
    # Ids
    Case("negative task id", "get_task", {"task_id": -1}, "Task -1 was not found"),
    Case("task id zero", "get_task", {"task_id": 0}, "Task 0 was not found"),
    Case("task id 2**63, one past BIGINT", "get_task", {"task_id": 2**63}, f"Task {2**63} was not found"),
    Case("task id 10**30", "update_task", {"task_id": 10**30, "title": "x"}, f"Task {10**30} was not found"),
    Case("conversation id 2**63", "add_message", {"conversation_id": 2**63, "role": "user", "content": "x"},
         f"Conversation {2**63} was not found"),
    Case("negative conversation id", "delete_conversation", {"conversation_id": -5}, "Conversation -5 was not found"),
    Case("another user's task id reads as not found", "get_task", lambda ctx: {"task_id": ctx["foreign_task"]},
         "was not found", check=same_error_as_missing_task, setup=needs("foreign")),
    Case("another user's task cannot be deleted", "delete_task", lambda ctx: {"task_id": ctx["foreign_task"]},
         "was not found", setup=needs("foreign")),
    Case("another user's conversation reads as not found", "get_history",
         lambda ctx: {"conversation_id": ctx["foreign_conversation"]}, "was not found",
         check=same_error_as_missing_conversation, setup=needs("foreign")),
    Case("no message goes into another user's conversation", "add_message",
         lambda ctx: {"conversation_id": ctx["foreign_conversation"], "role": "user", "content": "planted"},
         "was not found", setup=needs("foreign")),
    # Page sizes and cursors
    Case("page size 0", "list_tasks", {"limit": 0}, "from 1 to 200"),
    Case("page size 1", "list_tasks", {"limit": 1, "status": "all"}, check=listed_count(1, has_more=True),
         setup=needs("search")),
    Case("page size 200", "list_tasks", {"limit": 200, "status": "all"}, check=listed_count(4, has_more=False),
         setup=needs("search")),
    Case("page size 201", "list_tasks", {"limit": 201}, "from 1 to 200"),
    Case("page size -1", "list_conversations", {"limit": -1}, "from 1 to 200"),
    Case("history page size 201", "get_history", lambda ctx: {"conversation_id": ctx["conversation"], "limit": 201},
         "from 1 to 200", setup=needs("conversation")),
    Case("history with max_chars_per_message 0", "get_history",
         lambda ctx: {"conversation_id": ctx["conversation"], "max_chars_per_message": 0},
         "Invalid argument max_chars_per_message", setup=needs("conversation")),
    Case("cursor that is not base64", "list_tasks", {"cursor": "not a cursor!"}, "Invalid cursor"),
    Case("cursor with a negative id", "list_tasks", {"cursor": forged_cursor("t", -5)}, "Invalid cursor"),
    Case("cursor with an id past BIGINT", "list_tasks", {"cursor": forged_cursor("t", 2**70)}, "Invalid cursor"),
    Case("cursor holding a boolean", "list_tasks", {"cursor": forged_cursor("t", True)}, "Invalid cursor"),
    Case("cursor of the trash given to the active list", "list_tasks",
         {"cursor": forged_cursor("td", "2026-01-01T00:00:00+00:00", 5)}, "Invalid cursor"),
    Case("cursor with a date in year 1 and an offset", "list_deleted_tasks",
         {"cursor": forged_cursor("td", "0001-01-01T00:00:00+05:00", 5)}, "Invalid cursor"),
    Case("cursor with a naive date", "list_conversations", {"cursor": forged_cursor("c", "2026-01-01T00:00:00", 5)},
         "Invalid cursor"),
    Case("history 'before' cursor forged as SQL", "get_history",
         lambda ctx: {"conversation_id": ctx["conversation"], "before": forged_cursor("m", "1 OR 1=1")},
         "Invalid before", setup=needs("conversation")),
    Case("stale cursor whose task was deleted still pages on", "list_tasks",
         lambda ctx: {"cursor": ctx["stale_cursor"], "status": "all", "limit": 10},
         check=listed_titles(["a_b", "back\\slash", "plain"]), setup=needs("search", "stale")),
    # Dates
    Case("due date without an offset is rejected", "create_task", {"title": "d", "due_at": "2026-12-05T17:00:00"},
         "must include a UTC offset"),
    Case("due_before without an offset is rejected", "list_tasks", {"due_before": "2026-12-05T17:00:00"},
         "must include a UTC offset"),
    Case("due date in year 1", "create_task", {"title": "d", "due_at": "0001-01-01T00:00:00Z"},
         "must be between 1900-01-01 and 2999-12-31"),
    Case("due date in year 9999", "update_task", lambda ctx: {"task_id": ctx["task"], "due_at": "9999-12-31T23:59:59Z"},
         "must be between 1900-01-01 and 2999-12-31", setup=needs("task")),
    Case("due date as words", "create_task", {"title": "d", "due_at": "tomorrow"}, "Invalid argument due_at"),
    Case("due date with a +14:00 offset is stored as the same instant in UTC", "create_task",
         {"title": "d", "due_at": "2026-12-31T23:30:00+14:00"}, delta=CREATED,
         check=task_field_reads_back("due_at", "2026-12-31T09:30:00Z")),
    # Roles, batches, tools and arguments
    Case("unknown message role", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "robot", "content": "x"},
         "Invalid argument role", setup=needs("conversation")),
    Case("message role in capitals", "add_message",
         lambda ctx: {"conversation_id": ctx["conversation"], "role": "USER", "content": "x"},
         "Invalid argument role", setup=needs("conversation")),
    Case("batch of 50 tasks is stored", "create_tasks", {"tasks": [{"title": f"b{n}"} for n in range(50)]},
         delta=(50, 0, 0), check=batch_outcome(50, 0)),
    Case("batch of 51 tasks", "create_tasks", {"tasks": [{"title": f"b{n}"} for n in range(51)]},
         "Invalid argument tasks"),
    Case("empty batch", "create_tasks", {"tasks": []}, "Invalid argument tasks"),
    Case("a blank item fails alone and the others are stored", "create_tasks",
         {"tasks": [{"title": "one"}, {"title": " "}, {"title": "three"}]}, delta=(2, 0, 0), check=batch_outcome(2, 1)),
    Case("batch item with an unknown field", "create_tasks", {"tasks": [{"title": "x", "owner": "someone"}]},
         "Invalid argument tasks"),
    Case("completing 51 tasks at once", "complete_tasks", {"task_ids": list(range(1, 52))}, "Invalid argument task_ids"),
    Case("unknown tool", "drop_all_tables", {}, "Unknown tool"),
    Case("unknown tool with a 10,000-character name", "x" * 10_000, {}, "Unknown tool"),
    Case("extra user_id argument cannot pick the user", "create_task", {"title": "x", "user_id": "someone-else"},
         "Unknown argument 'user_id'"),
    Case("extra argument on a read", "list_tasks", {"status": "all", "sql": "1=1"}, "Unknown argument 'sql'"),
    Case("extra argument with a 10,000-character name", "get_task", {"task_id": 1, "k" * 10_000: 1},
         "Unknown argument"),
]


# --- the test --------------------------------------------------------------------------------

# Lower-cased fragments that would show internals: SQL, drivers, locations, stack traces.
LEAK_MARKERS = (
    "select ", "insert into", "update task", "delete from", "sqlalchemy", "asyncpg", "aiosqlite", "sqlite3",
    "psycopg", "traceback", 'file "', ".py", "postgresql://", "postgres://", "sqlite://", "sqlstate",
    "/tmp/", "/work/", "password", "background on this error",
)


def reply_text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def assert_no_leak(text: str, case_args: dict[str, Any], database_url: str) -> None:
    lowered = text.lower()
    sent = json.dumps(case_args, ensure_ascii=False).lower()
    for marker in LEAK_MARKERS:
        # A stored value is echoed back; a marker the caller sent is not a leak.
        if marker in sent:
            continue
        assert marker not in lowered, f"reply shows {marker!r}: {text[:300]}"
    url = make_url(database_url)
    assert str(url.database) not in text
    assert "Error executing tool" not in text


async def user_counts(database: Database, user: str) -> tuple[int, int, int]:
    counts = []
    async with database.transaction(user, "count rows") as connection:
        for table in (task_table, conversation_table, message_table):
            query = select(func.count()).select_from(table).where(table.c.user_id == user)
            counts.append((await connection.execute(query)).scalar_one())
    return counts[0], counts[1], counts[2]


async def prepare(setup: frozenset[str], database: Database, user: str) -> dict[str, Any]:
    tasks, conversations = TaskRepository(database), ConversationRepository(database)
    ctx: dict[str, Any] = {}
    if "task" in setup:
        ctx["task"] = (await tasks.create_task(user, {"title": "existing"})).id
    if "conversation" in setup:
        ctx["conversation"] = (await conversations.create_conversation(user, "existing")).id
    if "search" in setup:
        for title in ("100% done", "a_b", "back\\slash", "plain"):
            await tasks.create_task(user, {"title": title})
    if "stale" in setup:
        first = await tasks.get_active_tasks(user, limit=1)
        ctx["stale_cursor"] = first.next_cursor
        await tasks.soft_delete_task(user, first.items[0].id)
    if "foreign" in setup:
        other = f"{user}-other"
        ctx["foreign_task"] = (await tasks.create_task(other, {"title": "not yours"})).id
        conversation = await conversations.create_conversation(other, "not yours")
        await conversations.add_message(other, conversation.id, "user", "private")
        ctx["foreign_conversation"] = conversation.id
        ctx["other"] = other
    return ctx


@pytest.mark.parametrize("case", CASES, ids=[case.note for case in CASES])
async def test_hostile_input(case: Case, mcp_server: TaskstoreServer, database: Database, database_url: str) -> None:
    user = f"hostile-{uuid.uuid4().hex[:10]}"
    ctx = await prepare(case.setup, database, user)
    args = case.args(ctx) if callable(case.args) else case.args
    before = await user_counts(database, user)
    other_before = await user_counts(database, ctx["other"]) if "other" in ctx else None

    async with in_process_client(mcp_server, user) as client:
        result = await client.call_tool(case.tool, args)
        text = reply_text(result)
        assert_no_leak(text, args, database_url)
        if case.error is not None:
            assert result.is_error, f"expected an error, got: {text[:300]}"
            # Case-insensitive: the phrase is what matters, not where the sentence starts.
            assert case.error.lower() in text.lower(), text[:300]
        else:
            assert not result.is_error, text[:300]
        if case.check is not None:
            await case.check(client, result, ctx)

    after = await user_counts(database, user)
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == case.delta
    if other_before is not None:
        assert await user_counts(database, ctx["other"]) == other_before


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({case.note for case in CASES}) == len(CASES)
