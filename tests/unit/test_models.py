"""Input validation, the UTC datetime column, pagination cursors and database URL parsing.

Validation runs through the repositories, so each case checks the ``InvalidInput`` a caller
sees on both backends, and accepted values are stored and read back. The cursor and URL tests
parse strings without a database, so they run once rather than once per backend.
"""

from __future__ import annotations

import base64
import json
import ssl
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from store import ConfigurationError, ConversationRepository, Database, InvalidCursor, InvalidInput, TaskRepository
from store.cursor import decode_id_cursor, decode_time_id_cursor, encode_cursor
from store.engine import POOLER_ENV, database_config
from store.models import MessageCreate, TaskCreate, TaskUpdate
from store.types import UTCDateTime

LOW_MEDIUM_HIGH = "'low', 'medium' or 'high'"
DATE_RANGE = "between 1900-01-01 and 2999-12-31"
# pydantic-core rejects a str holding an unpaired surrogate before the store's own check runs.
SURROGATE = "unable to parse raw data as a unicode string"


# --- TaskCreate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        pytest.param({}, "title", "Field required", id="title-missing"),
        pytest.param({"title": None}, "title", "valid string", id="title-null"),
        pytest.param({"title": ""}, "title", "at least 1 character", id="title-empty"),
        pytest.param({"title": "   \t "}, "title", "at least 1 character", id="title-blank"),
        pytest.param({"title": "x" * 256}, "title", "at most 255 characters", id="title-256"),
        pytest.param({"title": "a\x00b"}, "title", "control characters", id="title-nul"),
        pytest.param({"title": "a\tb"}, "title", "control characters", id="title-inner-tab"),
        pytest.param({"title": "a\nb"}, "title", "control characters", id="title-inner-newline"),
        pytest.param({"title": "a\x1bb"}, "title", "control characters", id="title-escape"),
        pytest.param({"title": "a\x7fb"}, "title", "control characters", id="title-delete"),
        pytest.param({"title": "a\ud800b"}, "title", SURROGATE, id="title-surrogate"),
        pytest.param({"title": "t", "description": "d" * 10_001}, "description", "at most 10000", id="desc-10001"),
        pytest.param({"title": "t", "description": "a\x00b"}, "description", "NUL", id="desc-nul"),
        pytest.param({"title": "t", "description": "a\x1bb"}, "description", "control characters", id="desc-escape"),
        pytest.param({"title": "t", "description": "\udfff"}, "description", SURROGATE, id="desc-surrogate"),
        pytest.param({"title": "t", "priority": "urgent"}, "priority", LOW_MEDIUM_HIGH, id="priority-unknown"),
        pytest.param({"title": "t", "priority": ""}, "priority", LOW_MEDIUM_HIGH, id="priority-empty"),
        pytest.param({"title": "t", "due_at": "2026-12-05T10:00:00"}, "due_at", "UTC offset", id="due-naive-text"),
        pytest.param({"title": "t", "due_at": datetime(2026, 12, 5)}, "due_at", "UTC offset", id="due-naive-datetime"),
        pytest.param({"title": "t", "due_at": "1899-12-31T23:59:59Z"}, "due_at", DATE_RANGE, id="due-1899"),
        pytest.param({"title": "t", "due_at": "3000-01-01T00:00:00Z"}, "due_at", DATE_RANGE, id="due-3000"),
        # 00:30 at +01:00 is 23:30 UTC on the last day of 1899.
        pytest.param({"title": "t", "due_at": "1900-01-01T00:30:00+01:00"}, "due_at", DATE_RANGE, id="due-1899-utc"),
        pytest.param({"title": "t", "idempotency_key": ""}, "idempotency_key", "at least 1", id="key-empty"),
        pytest.param({"title": "t", "idempotency_key": "k" * 256}, "idempotency_key", "at most 255", id="key-256"),
        pytest.param({"title": "t", "idempotency_key": "k\x00"}, "idempotency_key", "control", id="key-nul"),
        pytest.param({"title": "t", "user_id": "someone-else"}, "user_id", "Extra inputs", id="extra-user-id"),
    ],
)
async def test_create_task_rejects_invalid_input(
    tasks: TaskRepository, user_ids: tuple[str, str], data: dict[str, Any], field: str, fragment: str
) -> None:
    user, _ = user_ids
    with pytest.raises(InvalidInput) as caught:
        await tasks.create_task(user, data)
    assert caught.value.field == field
    assert fragment in caught.value.message


async def test_create_task_rejection_writes_no_row(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    with pytest.raises(InvalidInput):
        await tasks.create_task(user, {"title": "x" * 256})
    page = await tasks.get_active_tasks(user)
    assert page.items == []


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        pytest.param("x" * 255, "x" * 255, id="ascii-255"),
        pytest.param("é" * 255, "é" * 255, id="two-byte-255"),
        pytest.param("😀" * 255, "😀" * 255, id="four-byte-255"),
        pytest.param("  padded title \t", "padded title", id="trimmed"),
        # The length limit applies after trimming.
        pytest.param("  " + "x" * 255 + "\n", "x" * 255, id="trimmed-to-255"),
    ],
)
async def test_create_task_stores_valid_title(
    tasks: TaskRepository, user_ids: tuple[str, str], title: str, stored: str
) -> None:
    user, _ = user_ids
    created = await tasks.create_task(user, {"title": title})
    fetched = await tasks.get_task(user, created.id)
    assert fetched.title == stored


@pytest.mark.parametrize(
    "description",
    [
        pytest.param("d" * 10_000, id="10000"),
        pytest.param("line one\n\tindented\r\nline three", id="tab-and-line-breaks"),
        pytest.param("ü" * 10_000, id="non-ascii-10000"),
    ],
)
async def test_create_task_stores_valid_description(
    tasks: TaskRepository, user_ids: tuple[str, str], description: str
) -> None:
    user, _ = user_ids
    created = await tasks.create_task(user, {"title": "t", "description": description})
    fetched = await tasks.get_task(user, created.id)
    assert fetched.description == description


@pytest.mark.parametrize(
    ("due_at", "expected"),
    [
        pytest.param("1900-01-01T00:00:00Z", datetime(1900, 1, 1, tzinfo=UTC), id="earliest"),
        pytest.param(
            "2999-12-31T23:59:59.999999Z", datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), id="latest"
        ),
        pytest.param("3000-01-01T00:30:00+01:00", datetime(2999, 12, 31, 23, 30, tzinfo=UTC), id="latest-by-offset"),
    ],
)
async def test_create_task_accepts_due_at_on_range_edges(
    tasks: TaskRepository, user_ids: tuple[str, str], due_at: str, expected: datetime
) -> None:
    user, _ = user_ids
    created = await tasks.create_task(user, {"title": "t", "due_at": due_at})
    fetched = await tasks.get_task(user, created.id)
    assert fetched.due_at == expected


@pytest.mark.parametrize("priority", ["low", "medium", "high"])
async def test_create_task_accepts_each_priority(
    tasks: TaskRepository, user_ids: tuple[str, str], priority: str
) -> None:
    user, _ = user_ids
    created = await tasks.create_task(user, {"title": "t", "priority": priority})
    fetched = await tasks.get_task(user, created.id)
    assert fetched.priority == priority


async def test_create_task_accepts_idempotency_key_of_255(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    created = await tasks.create_task(user, {"title": "t", "idempotency_key": "k" * 255})
    again = await tasks.create_task(user, {"title": "t", "idempotency_key": "k" * 255})
    assert again.id == created.id


# --- TaskUpdate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        pytest.param({"title": None}, "title", "must not be null", id="title-null"),
        pytest.param({"title": "  "}, "title", "at least 1 character", id="title-blank"),
        pytest.param({"title": "x" * 256}, "title", "at most 255 characters", id="title-256"),
        pytest.param({"title": "a\x00b"}, "title", "control characters", id="title-nul"),
        pytest.param({"title": "\ud800"}, "title", SURROGATE, id="title-surrogate"),
        pytest.param({"description": "d" * 10_001}, "description", "at most 10000", id="desc-10001"),
        pytest.param({"description": "\x00"}, "description", "NUL", id="desc-nul"),
        pytest.param({"priority": "urgent"}, "priority", LOW_MEDIUM_HIGH, id="priority-unknown"),
        pytest.param({"due_at": "2026-12-05T10:00:00"}, "due_at", "UTC offset", id="due-naive"),
        pytest.param({"due_at": "3000-01-01T00:00:00Z"}, "due_at", DATE_RANGE, id="due-3000"),
        pytest.param({"completed": True}, "completed", "Extra inputs", id="extra-completed"),
        pytest.param({}, "data", "nothing to update", id="empty"),
    ],
)
async def test_update_task_rejects_invalid_input(
    tasks: TaskRepository, user_ids: tuple[str, str], data: dict[str, Any], field: str, fragment: str
) -> None:
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "original"})
    with pytest.raises(InvalidInput) as caught:
        await tasks.update_task(user, task.id, data)
    assert caught.value.field == field
    assert fragment in caught.value.message


async def test_update_task_rejection_leaves_task_unchanged(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "original"})
    with pytest.raises(InvalidInput):
        await tasks.update_task(user, task.id, {"title": None})
    assert await tasks.get_task(user, task.id) == task


async def test_update_task_trims_title(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "original"})
    updated = await tasks.update_task(user, task.id, {"title": "  renamed  "})
    assert updated.title == "renamed"


def test_task_update_changes_lists_only_fields_set() -> None:
    update = TaskUpdate.model_validate({"description": None, "priority": "low"})
    assert update.changes() == {"description": None, "priority": "low"}


def test_task_update_model_raises_validation_error_naming_title() -> None:
    with pytest.raises(ValidationError) as caught:
        TaskUpdate.model_validate({"title": None})
    assert caught.value.errors()[0]["loc"] == ("title",)


def test_task_create_model_raises_validation_error_naming_limit() -> None:
    with pytest.raises(ValidationError) as caught:
        TaskCreate.model_validate({"title": "x" * 256})
    assert caught.value.errors()[0]["ctx"] == {"max_length": 255}


# --- ConversationCreate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "fragment"),
    [
        pytest.param("x" * 256, "at most 255 characters", id="256"),
        pytest.param("   ", "at least 1 character", id="blank"),
        pytest.param("a\nb", "control characters", id="newline"),
        pytest.param("a\x00b", "control characters", id="nul"),
        pytest.param("\udc00", SURROGATE, id="surrogate"),
    ],
)
async def test_create_conversation_rejects_invalid_title(
    conversations: ConversationRepository, user_ids: tuple[str, str], title: str, fragment: str
) -> None:
    user, _ = user_ids
    with pytest.raises(InvalidInput) as caught:
        await conversations.create_conversation(user, title)
    assert caught.value.field == "title"
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("x" * 255, "x" * 255, id="255"),
        pytest.param("  chat  ", "chat", id="trimmed"),
    ],
)
async def test_create_conversation_stores_valid_title(
    conversations: ConversationRepository, user_ids: tuple[str, str], title: str | None, stored: str | None
) -> None:
    user, _ = user_ids
    created = await conversations.create_conversation(user, title)
    fetched = await conversations.get_conversation(user, created.id)
    assert fetched.title == stored


# --- MessageCreate -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "content", "key", "field", "fragment"),
    [
        pytest.param("robot", "hi", None, "role", "'user', 'assistant', 'system' or 'tool'", id="role-unknown"),
        pytest.param("User", "hi", None, "role", "'user', 'assistant', 'system' or 'tool'", id="role-case"),
        pytest.param("user", "", None, "content", "at least 1 character", id="content-empty"),
        pytest.param("user", "c" * 100_001, None, "content", "at most 100000", id="content-100001"),
        pytest.param("user", "a\x00b", None, "content", "NUL", id="content-nul"),
        pytest.param("user", "a\x08b", None, "content", "control characters", id="content-backspace"),
        pytest.param("user", "a\ud83db", None, "content", SURROGATE, id="content-surrogate"),
        pytest.param("user", "hi", "k" * 256, "idempotency_key", "at most 255", id="key-256"),
        pytest.param("user", "hi", "k\n", "idempotency_key", "control characters", id="key-newline"),
    ],
)
async def test_add_message_rejects_invalid_input(
    conversations: ConversationRepository,
    user_ids: tuple[str, str],
    role: str,
    content: str,
    key: str | None,
    field: str,
    fragment: str,
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    with pytest.raises(InvalidInput) as caught:
        await conversations.add_message(user, conversation.id, role, content, key)
    assert caught.value.field == field
    assert fragment in caught.value.message


async def test_add_message_rejection_writes_no_message(
    conversations: ConversationRepository, user_ids: tuple[str, str]
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    with pytest.raises(InvalidInput):
        await conversations.add_message(user, conversation.id, "user", "c" * 100_001)
    history = await conversations.get_history(user, conversation.id)
    assert history.items == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("c" * 100_000, id="100000"),
        pytest.param("😀" * 100_000, id="four-byte-100000"),
        pytest.param("first\n\tsecond\r\n", id="tab-and-line-breaks"),
        pytest.param("   ", id="whitespace-only"),
    ],
)
async def test_add_message_stores_valid_content(
    conversations: ConversationRepository, user_ids: tuple[str, str], content: str
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    await conversations.add_message(user, conversation.id, "assistant", content)
    history = await conversations.get_history(user, conversation.id)
    assert [message.content for message in history.items] == [content]


@pytest.mark.parametrize("role", ["user", "assistant", "system", "tool"])
async def test_add_message_accepts_each_role(
    conversations: ConversationRepository, user_ids: tuple[str, str], role: str
) -> None:
    user, _ = user_ids
    conversation = await conversations.create_conversation(user)
    message = await conversations.add_message(user, conversation.id, role, "hi")
    assert message.role == role


def test_message_create_model_raises_validation_error_naming_limit() -> None:
    with pytest.raises(ValidationError) as caught:
        MessageCreate.model_validate({"role": "user", "content": "c" * 100_001})
    assert caught.value.errors()[0]["ctx"] == {"max_length": 100_000}


# --- TaskFilter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "field", "fragment"),
    [
        pytest.param({"status": "done"}, "status", "'pending', 'completed' or 'all'", id="status-unknown"),
        pytest.param({"priority": "urgent"}, "priority", LOW_MEDIUM_HIGH, id="priority-unknown"),
        pytest.param({"due_before": "2026-12-05T10:00:00"}, "due_before", "UTC offset", id="due-before-naive"),
        pytest.param({"due_after": "2026-12-05"}, "due_after", "UTC offset", id="due-after-date-only"),
        pytest.param({"due_before": "3000-01-01T00:00:00Z"}, "due_before", DATE_RANGE, id="due-before-3000"),
        pytest.param({"due_after": "1899-12-31T00:00:00Z"}, "due_after", DATE_RANGE, id="due-after-1899"),
        pytest.param({"overdue": "maybe"}, "overdue", "valid boolean", id="overdue-not-boolean"),
        pytest.param({"search": ""}, "search", "at least 1 character", id="search-empty"),
        pytest.param({"search": "s" * 201}, "search", "at most 200 characters", id="search-201"),
        pytest.param({"search": "a\x00"}, "search", "control characters", id="search-nul"),
        pytest.param({"search": "\ud800"}, "search", SURROGATE, id="search-surrogate"),
        pytest.param({"user_id": "someone-else"}, "user_id", "Extra inputs", id="extra-user-id"),
    ],
)
async def test_task_filter_rejects_invalid_input(
    tasks: TaskRepository, user_ids: tuple[str, str], filters: dict[str, Any], field: str, fragment: str
) -> None:
    user, _ = user_ids
    with pytest.raises(InvalidInput) as caught:
        await tasks.get_active_tasks(user, filters)
    assert caught.value.field == field
    assert fragment in caught.value.message


async def test_task_filter_accepts_search_of_200(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    task = await tasks.create_task(user, {"title": "s" * 200})
    page = await tasks.get_active_tasks(user, {"search": "s" * 200})
    assert [item.id for item in page.items] == [task.id]


# --- UTCDateTime -------------------------------------------------------------------------------


async def test_offset_due_at_keeps_instant(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    created = await tasks.create_task(user, {"title": "t", "due_at": "2026-12-05T10:00:00.123456+02:00"})
    fetched = await tasks.get_task(user, created.id)
    assert fetched.due_at == datetime(2026, 12, 5, 8, 0, 0, 123_456, tzinfo=UTC)


async def test_offset_due_at_reads_back_in_utc(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    created = await tasks.create_task(
        user, {"title": "t", "due_at": datetime(2026, 12, 5, 10, tzinfo=timezone(timedelta(hours=2)))}
    )
    fetched = await tasks.get_task(user, created.id)
    assert fetched.due_at is not None
    assert fetched.due_at.utcoffset() == timedelta(0)
    assert fetched.due_at.hour == 8


async def test_created_at_reads_back_in_utc(tasks: TaskRepository, user_ids: tuple[str, str]) -> None:
    user, _ = user_ids
    created = await tasks.create_task(user, {"title": "t"})
    fetched = await tasks.get_task(user, created.id)
    assert fetched.created_at.utcoffset() == timedelta(0)


def test_utc_datetime_column_rejects_naive_datetime(database: Database) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        UTCDateTime().process_bind_param(datetime(2026, 12, 5, 10), database.engine.dialect)


# --- cursors -----------------------------------------------------------------------------------


def _forge(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).rstrip(b"=").decode()


def test_id_cursor_round_trips() -> None:
    cursor = encode_cursor("t", 2**63 - 1)
    assert decode_id_cursor("t", cursor) == 2**63 - 1


def test_time_id_cursor_round_trips_as_utc() -> None:
    moment = datetime(2026, 12, 5, 10, 0, 0, 500, tzinfo=timezone(timedelta(hours=2)))
    decoded_moment, decoded_id = decode_time_id_cursor("c", encode_cursor("c", moment, 7))
    assert decoded_moment == moment
    assert decoded_moment.utcoffset() == timedelta(0)
    assert decoded_id == 7


def test_cursor_uses_only_url_safe_characters() -> None:
    cursor = encode_cursor("c", datetime(2026, 12, 5, tzinfo=UTC), 2**62)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("!!!!", id="not-base64"),
        pytest.param("bm90IGpzb24", id="base64-not-json"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(), id="invalid-utf8"),
        pytest.param(_forge({"kind": "t", "id": 1}), id="object-not-array"),
        pytest.param(_forge(["t"]), id="no-key"),
        pytest.param(_forge(["t", 1, 2]), id="key-too-long"),
        pytest.param(_forge(["td", 1]), id="wrong-kind"),
        pytest.param(_forge(["t", 0]), id="id-zero"),
        pytest.param(_forge(["t", -1]), id="id-negative"),
        pytest.param(_forge(["t", 2**63]), id="id-past-bigint"),
        pytest.param(_forge(["t", True]), id="id-boolean"),
        pytest.param(_forge(["t", "5"]), id="id-string"),
        pytest.param(_forge(["t", 1.0]), id="id-float"),
        pytest.param(_forge(["t", None]), id="id-null"),
        pytest.param("A" * 201, id="oversized"),
        # Valid JSON padded with spaces: rejected for its length alone.
        pytest.param(base64.urlsafe_b64encode(b'["t",' + b" " * 160 + b"1]").decode(), id="oversized-valid"),
    ],
)
def test_id_cursor_rejects_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_id_cursor("t", cursor)


def test_id_cursor_rejects_non_string() -> None:
    with pytest.raises(InvalidCursor):
        decode_id_cursor("t", 12345)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(_forge(["c", "yesterday", 1]), id="not-a-date"),
        pytest.param(_forge(["c", "2026-12-05T10:00:00", 1]), id="naive"),
        pytest.param(_forge(["c", 1764928800, 1]), id="number"),
        pytest.param(_forge(["c", "2026-12-05T10:00:00Z", 0]), id="id-zero"),
        pytest.param(_forge(["c", "0001-01-01T00:00:00+01:00", 1]), id="before-year-1-in-utc"),
        pytest.param(_forge(["c", "9999-12-31T23:59:59-01:00", 1]), id="after-year-9999-in-utc"),
        pytest.param(encode_cursor("m", 1), id="wrong-kind"),
    ],
)
def test_time_id_cursor_rejects_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_time_id_cursor("c", cursor)


def test_invalid_cursor_names_the_parameter() -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode_id_cursor("m", "garbage", "before")
    assert caught.value.field == "before"


def test_invalid_cursor_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        decode_id_cursor("t", "garbage")


# --- database_config ---------------------------------------------------------------------------

NEON_URL = "postgresql://u:p@ep-x-pooler.us-east-2.aws.neon.tech/db?sslmode=require&channel_binding=require"


@pytest.fixture(autouse=True)
def no_pooler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pooler variable turns on pooler settings for every PostgreSQL URL.
    monkeypatch.delenv(POOLER_ENV, raising=False)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://user:secret@db.example.com:5432/app",
        "postgresql://user:secret@db.example.com:5432/app",
        "postgresql+asyncpg://user:secret@db.example.com:5432/app",
        "postgresql+psycopg://user:secret@db.example.com:5432/app",
    ],
)
def test_postgres_url_uses_asyncpg(url: str) -> None:
    config = database_config(url)
    assert config.url.drivername == "postgresql+asyncpg"


def test_postgres_url_keeps_host_port_and_database() -> None:
    config = database_config("postgres://user:secret@db.example.com:6543/app")
    assert (config.url.host, config.url.port, config.url.database) == ("db.example.com", 6543, "app")


def test_plain_postgres_url_uses_no_pooler_settings() -> None:
    config = database_config("postgresql://user:secret@db.example.com/app")
    assert "statement_cache_size" not in config.connect_args


def test_plain_postgres_url_has_no_ssl_argument() -> None:
    config = database_config("postgresql://user:secret@db.example.com/app")
    assert "ssl" not in config.connect_args


def test_relative_sqlite_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = database_config("sqlite:///data/tasks.db")
    assert config.url.database == str(tmp_path / "data" / "tasks.db")


def test_home_relative_sqlite_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = database_config("sqlite:///~/tasks.db")
    assert config.url.database == str(tmp_path / "tasks.db")


def test_sqlite_url_uses_aiosqlite(tmp_path: Path) -> None:
    config = database_config(f"sqlite:///{tmp_path / 'tasks.db'}")
    assert config.url.drivername == "sqlite+aiosqlite"


def test_in_memory_sqlite_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="in-memory"):
        database_config("sqlite:///:memory:")


def test_neon_url_gives_ssl_context() -> None:
    config = database_config(NEON_URL)
    assert isinstance(config.connect_args["ssl"], ssl.SSLContext)


def test_neon_url_disables_statement_cache() -> None:
    config = database_config(NEON_URL)
    assert config.connect_args["statement_cache_size"] == 0


def test_neon_url_disables_sqlalchemy_statement_cache() -> None:
    config = database_config(NEON_URL)
    assert config.url.query == {"prepared_statement_cache_size": "0"}


def test_neon_pooler_host_is_detected() -> None:
    config = database_config(NEON_URL)
    assert config.pooler is True


def test_sslmode_require_encrypts_without_verification() -> None:
    context = database_config(NEON_URL).connect_args["ssl"]
    assert context.verify_mode == ssl.CERT_NONE


def test_sslmode_verify_full_requires_certificate() -> None:
    context = database_config("postgresql://u:p@db.example.com/app?sslmode=verify-full").connect_args["ssl"]
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_sslmode_verify_full_checks_hostname() -> None:
    context = database_config("postgresql://u:p@db.example.com/app?sslmode=verify-full").connect_args["ssl"]
    assert context.check_hostname is True


def test_sslmode_verify_ca_skips_hostname_check() -> None:
    context = database_config("postgresql://u:p@db.example.com/app?sslmode=verify-ca").connect_args["ssl"]
    assert context.check_hostname is False


@pytest.mark.parametrize(("sslmode", "expected"), [("disable", False), ("allow", "allow"), ("prefer", "prefer")])
def test_non_verifying_sslmode_maps_to_asyncpg_value(sslmode: str, expected: object) -> None:
    config = database_config(f"postgresql://u:p@db.example.com/app?sslmode={sslmode}")
    assert config.connect_args["ssl"] == expected


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        pytest.param("frobnicate=1", "frobnicate", id="unknown"),
        pytest.param("sslmode=sometimes", "sslmode", id="bad-sslmode"),
        pytest.param("channel_binding=always", "channel_binding", id="bad-channel-binding"),
        pytest.param("connect_timeout=0", "connect_timeout", id="zero-timeout"),
        pytest.param("options=endpoint", "options", id="bad-options"),
    ],
)
def test_unsupported_url_parameter_raises_configuration_error(query: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        database_config(f"postgresql://u:p@db.example.com/app?{query}")


def test_unsupported_scheme_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="mysql"):
        database_config("mysql://u:p@db.example.com/app")


def test_unknown_parameter_error_omits_its_value() -> None:
    with pytest.raises(ConfigurationError) as caught:
        database_config("postgresql://u:p@db.example.com/app?password=hunter2-secret")
    assert "hunter2-secret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:hunter2-secret@db.example.com:5432/app",
        "postgres://alice:hunter2-secret@ep-x-pooler.us-east-2.aws.neon.tech/app?sslmode=require",
        "postgresql+asyncpg://alice:hunter2-secret@db.example.com/app",
    ],
)
def test_describe_omits_password(url: str) -> None:
    assert "hunter2-secret" not in database_config(url).describe()


def test_describe_omits_user_name() -> None:
    assert "alice" not in database_config("postgresql://alice:pw@db.example.com/app").describe()


def test_describe_names_host_and_database() -> None:
    description = database_config("postgresql://alice:pw@db.example.com:6543/app").describe()
    assert description == "postgresql database 'app' on db.example.com:6543"
