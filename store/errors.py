"""Exceptions raised by the store.

Every error the store raises derives from ``StoreError``::

    StoreError
    ├── NotFound
    │   ├── TaskNotFound
    │   └── ConversationNotFound
    ├── InvalidInput        (a value failed validation: names the field and the limit)
    │   └── InvalidCursor
    ├── VersionConflict     (carries the current version)
    ├── DatabaseUnavailable (connection lost, refused or timed out: safe to retry)
    └── ConfigurationError  (bad DATABASE_URL, unwritable data directory)

Database driver errors are translated in ``translate_database_error`` and nowhere else, so
the text of an error never carries SQL, a DSN or a driver traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

logger = logging.getLogger(__name__)


class StoreError(Exception):
    """Base class of every store error."""


class NotFound(StoreError):
    """A row does not exist, is soft-deleted, or belongs to another user."""

    kind = "item"

    def __init__(self, item_id: int) -> None:
        self.item_id = item_id
        super().__init__(f"{self.kind} {item_id} not found")


class TaskNotFound(NotFound):
    """No active task with this id for this user."""

    kind = "task"


class ConversationNotFound(NotFound):
    """No active conversation with this id for this user."""

    kind = "conversation"


class InvalidInput(StoreError):
    """A value failed validation; ``field`` names it and the message states the limit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    @classmethod
    def from_validation_error(cls, error: ValidationError) -> InvalidInput:
        """Build from the first error of a pydantic validation failure."""
        first = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "input"
        message = first["msg"]
        # Pydantic prefixes messages of custom validators with "Value error, ".
        message = message.removeprefix("Value error, ")
        return cls(field, message)


class InvalidCursor(InvalidInput):
    """A pagination cursor is malformed or belongs to another kind of list."""

    def __init__(self, field: str = "cursor") -> None:
        super().__init__(field, "invalid cursor; pass the next_cursor of the previous page, or omit it")


class VersionConflict(StoreError):
    """``expected_version`` did not match the row's current version."""

    def __init__(self, task_id: int, expected: int, current: int) -> None:
        self.task_id = task_id
        self.expected = expected
        self.current = current
        super().__init__(f"task {task_id} is at version {current}, not {expected}")


class DatabaseUnavailable(StoreError):
    """The database could not be reached or dropped the connection; the call may be retried."""

    def __init__(self, message: str = "database unavailable; retry later") -> None:
        super().__init__(message)


class ConfigurationError(StoreError):
    """The database configuration cannot be used."""


# SQLSTATE classes that mean the server or the connection went away, not that the query was wrong.
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P", "53")


def _sqlstate(error: BaseException) -> str | None:
    for candidate in (error, getattr(error, "orig", None), getattr(error, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_unavailable(error: BaseException) -> bool:
    """Tell whether a driver error means the database is unreachable rather than the query wrong."""
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.TimeoutError):  # pool checkout timed out
        return True
    code = _sqlstate(error)
    if code is not None and code.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
        return True
    original = getattr(error, "orig", None)
    if original is not None and original is not error:
        text = f"{type(original).__name__} {original}".lower()
        if "connection" in text and ("closed" in text or "lost" in text or "refused" in text):
            return True
        if isinstance(original, (ConnectionError, TimeoutError, OSError)):
            return True
    return False


@contextmanager
def translate_database_error(operation: str) -> Iterator[None]:
    """Turn driver and connection errors raised inside the block into store errors.

    Store errors pass through unchanged. Connection failures become ``DatabaseUnavailable``;
    anything else is logged with its type (never its SQL parameters) and re-raised as
    ``StoreError`` with a generic message.
    """
    try:
        yield
    except StoreError:
        raise
    except (sa_exc.SQLAlchemyError, OSError, TimeoutError, ConnectionError) as error:
        if is_unavailable(error):
            cause = getattr(error, "orig", None) or error
            logger.warning("database unavailable during %s: %s: %s", operation, type(cause).__name__, str(cause)[:200])
            raise DatabaseUnavailable() from error
        # The driver's own message names the constraint or the cause; it carries no password.
        cause = getattr(error, "orig", None) or error
        detail = str(cause).splitlines()[0][:300] if str(cause) else ""
        logger.error("database error during %s: %s: %s", operation, type(cause).__name__, detail)
        raise StoreError(f"{operation} failed because of a database error") from error
