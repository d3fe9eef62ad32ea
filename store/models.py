"""Tables and the validated input models of the store.

The ``table=True`` classes map rows and skip validation (a SQLModel rule), so every value a
caller sends goes through one of the input models below before it reaches SQL.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field as PydanticField, field_validator
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,

    text,
)
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata = MetaData(naming_convention=NAMING_CONVENTION)

TITLE_MAX = 255
DESCRIPTION_MAX = 10_000
CONTENT_MAX = 100_000
USER_ID_MAX = 255
IDEMPOTENCY_KEY_MAX = 255
SEARCH_MAX = 200
# Ids are BIGINT on PostgreSQL; a larger number cannot name a row.
ID_MAX = 2**63 - 1
# Dates outside this range are almost certainly a mistake (a year typed as 20260, a Unix
# timestamp in milliseconds), and the bounds keep every backend's date arithmetic in range.
EARLIEST_DATE = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)

# Row ids: BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY aliases the rowid.
_id_type = BigInteger().with_variant(Integer(), "sqlite")


class Priority(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


# --- tables -----------------------------------------------------------------------------------


class Task(SQLModel, table=True):
    __tablename__ = "task"
    __table_args__ = (
        CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority"),
        CheckConstraint("version >= 1", name="version_positive"),
        # The list query: a user's active tasks in id order, optionally by completion.
        Index(
            None,
            "user_id",
            "completed",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index(
            None,
            "user_id",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        # The trash: a user's deleted tasks, newest deletion first, and the purge by age.
        Index(
            None,
            "user_id",
            "deleted_at",
            "id",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
        Index(
            None,
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(_id_type, primary_key=True, autoincrement=True))
    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), nullable=False))
    title: str = Field(sa_column=Column(String(TITLE_MAX), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    completed: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    priority: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    due_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default=text("1")))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(IDEMPOTENCY_KEY_MAX), nullable=True))


class Conversation(SQLModel, table=True):
    __tablename__ = "conversation"
    __table_args__ = (
        # Lets message rows reference (id, user_id), so a message can never sit in another
        # user's conversation.
        UniqueConstraint("id", "user_id"),
        Index(
            None,
            "user_id",
            "updated_at",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index(
            None,
            "user_id",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(_id_type, primary_key=True, autoincrement=True))
    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), nullable=False))
    title: str | None = Field(default=None, sa_column=Column(String(TITLE_MAX), nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        ForeignKeyConstraint(
            ["conversation_id", "user_id"],
            ["conversation.id", "conversation.user_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="role"),
        # History: a conversation's messages in insertion (id) order.
        Index(None, "conversation_id", "id"),
        Index(
            None,
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(_id_type, primary_key=True, autoincrement=True))
    conversation_id: int = Field(sa_column=Column(_id_type, nullable=False))
    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), nullable=False))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    content: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(IDEMPOTENCY_KEY_MAX), nullable=True))


# --- input validation ----------------------------------------------------------------------------

# C0 controls and DEL. Tab, line feed and carriage return are allowed in multi-line text.
_CONTROL = {chr(code) for code in range(32)} | {"\x7f"}
_MULTILINE_ALLOWED = {"\t", "\n", "\r"}


def _check_encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains an unpaired surrogate; send valid UTF-8 text") from None
    return value


def _single_line(value: str) -> str:
    _check_encodable(value)
    if any(char in _CONTROL for char in value):
        raise ValueError("must not contain control characters such as NUL, tab or line breaks")
    return value


def _multi_line(value: str) -> str:
    _check_encodable(value)
    if any(char in _CONTROL and char not in _MULTILINE_ALLOWED for char in value):
        raise ValueError("must not contain NUL or control characters other than tab and line breaks")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _in_date_range(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a UTC offset, for example 2026-12-05T17:00:00Z")
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError("must be between 1900-01-01 and 2999-12-31")
    return value.astimezone(UTC)


Title = Annotated[
    str,
    PydanticField(min_length=1, max_length=TITLE_MAX),
    AfterValidator(_not_blank),
    AfterValidator(_single_line),
]
Description = Annotated[str, PydanticField(max_length=DESCRIPTION_MAX), AfterValidator(_multi_line)]
DueAt = Annotated[datetime, AfterValidator(_in_date_range)]
IdempotencyKey = Annotated[
    str,
    PydanticField(min_length=1, max_length=IDEMPOTENCY_KEY_MAX),
    AfterValidator(_single_line),
]
UserId = Annotated[str, PydanticField(min_length=1, max_length=USER_ID_MAX), AfterValidator(_single_line)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


class TaskCreate(_Input):
    """A new task. ``title`` is trimmed; ``idempotency_key`` makes retries return the first row."""

    title: Title
    description: Description | None = None
    priority: Priority | None = None
    due_at: DueAt | None = None
    idempotency_key: IdempotencyKey | None = None

    @field_validator("title", mode="before")
    @classmethod
    def _trim_title(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class TaskUpdate(_Input):
    """A partial change: omitted fields stay, an explicit null clears a nullable field."""

    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    due_at: DueAt | None = None

    @field_validator("title", mode="before")
    @classmethod
    def _trim_title(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null; a task always has a title")
        return value.strip() if isinstance(value, str) else value

    def changes(self) -> dict[str, object]:
        """Return the fields the caller set, with their new values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class ConversationCreate(_Input):
    title: Title | None = None

    @field_validator("title", mode="before")
    @classmethod
    def _trim_title(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class MessageCreate(_Input):
    role: Role
    content: Annotated[str, PydanticField(min_length=1, max_length=CONTENT_MAX), AfterValidator(_multi_line)]
    idempotency_key: IdempotencyKey | None = None


TaskStatus = Literal["pending", "completed", "all"]


class TaskFilter(_Input):
    """Filters of a task list; every one is applied in SQL."""

    status: TaskStatus = "all"
    priority: Priority | None = None
    due_before: DueAt | None = None
    due_after: DueAt | None = None
    overdue: bool = False
    search: Annotated[str, PydanticField(min_length=1, max_length=SEARCH_MAX), AfterValidator(_single_line)] | None = (
        None
    )


# --- read models ---------------------------------------------------------------------------------
# Repositories return these, built from rows without a second validation pass.


class TaskRead(SQLModel):
    id: int
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    priority: Priority | None
    due_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class ConversationRead(SQLModel):
    id: int
    title: str | None
    created_at: datetime
    updated_at: datetime


class MessageRead(SQLModel):
    id: int
    conversation_id: int
    role: Role
    content: str
    created_at: datetime
