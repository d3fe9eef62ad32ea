"""User-scoped task repository."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Integer, Select, String, and_, bindparam, case, false, insert, or_, select, true, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from store.cursor import decode_id_cursor, decode_time_id_cursor, encode_cursor
from store.database import Database
from store.errors import InvalidInput, TaskNotFound, VersionConflict
from store.models import ID_MAX, Priority, Task, TaskCreate, TaskFilter, TaskRead, TaskUpdate
from store.pagination import DEFAULT_PAGE_SIZE, Page, check_limit
from store.rows import constructor
from store.types import utc_now

task_table = Task.__table__
_c = task_table.c
_READ_COLUMNS = tuple(_c[name] for name in TaskRead.model_fields)
_ACTIVE_KIND = "t"
_DELETED_KIND = "td"


_PRIORITIES = {priority.value: priority for priority in Priority}
_build_task = constructor(TaskRead)
# Every statement that reads tasks selects _READ_COLUMNS, in this order.
_TASK_FIELDS = tuple(TaskRead.model_fields)


def _to_task(row: Row[Any]) -> TaskRead:
    # model_construct skips validation, so the column's text becomes the enum here: a plain
    # string in an enum field makes every later serialization warn, which costs more than the
    # whole row conversion.
    values = dict(zip(_TASK_FIELDS, row))
    if values["priority"] is not None:
        values["priority"] = _PRIORITIES[values["priority"]]
    return _build_task(values)


def _validated(model: type[Any], data: Any) -> Any:
    if isinstance(data, model):
        return data
    if not isinstance(data, Mapping):
        raise InvalidInput("data", f"expected an object with the fields of {model.__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInput.from_validation_error(error) from None


def _valid_id(task_id: object) -> int:
    """Return ``task_id`` if it could name a row; anything else cannot exist, so it is not found."""
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        raise InvalidInput("task_id", "must be an integer")
    if not 0 < task_id <= ID_MAX:
        raise TaskNotFound(task_id)
    return task_id


def _check_version(expected_version: object) -> int | None:
    if expected_version is None:
        return None
    if not isinstance(expected_version, int) or isinstance(expected_version, bool) or expected_version < 1:
        raise InvalidInput("expected_version", "must be a positive integer")
    return expected_version


# The columns come from each call's values, so the statement is the same as values(...) built per call.
_INSERT_TASK = insert(task_table).returning(*_READ_COLUMNS)
_LIKE_ESCAPE = "/"


def _escape_like(text: str) -> str:
    """Make %, _ and the escape character match literally, as ``autoescape=True`` does."""
    return text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", _LIKE_ESCAPE + "%").replace("_", _LIKE_ESCAPE + "_")


@lru_cache(maxsize=256)
def _active_query(
    status: str,
    priority: bool,
    due_before: bool,
    due_after: bool,
    overdue: bool,
    search: bool,
    after: bool,
) -> Select[Any]:
    """Return the list statement for one combination of filters, every value a named parameter.

    It is built once per combination and reused, so a call neither rebuilds the expression nor
    recomputes its cache key. The SQL is the same as when the values were built into it.
    """
    conditions: list[ColumnElement[bool]] = [_c.user_id == bindparam("user_id"), _c.deleted_at.is_(None)]
    if status == "pending":
        conditions.append(_c.completed.is_(false()))
    elif status == "completed":
        conditions.append(_c.completed.is_(true()))
    if priority:
        conditions.append(_c.priority == bindparam("priority"))
    if due_before:
        conditions.append(_c.due_at < bindparam("due_before"))
    if due_after:
        conditions.append(_c.due_at >= bindparam("due_after"))
    if overdue:
        conditions.append(and_(_c.due_at < bindparam("now"), _c.completed.is_(false())))
    if search:
        pattern = bindparam("search", type_=String)
        conditions.append(
            or_(
                _c.title.icontains(pattern, escape=_LIKE_ESCAPE),
                _c.description.icontains(pattern, escape=_LIKE_ESCAPE),
            )
        )
    if after:
        conditions.append(_c.id > bindparam("after_id"))
    return select(*_READ_COLUMNS).where(*conditions).order_by(_c.id).limit(bindparam("limit", type_=Integer))


class TaskRepository:
    """Tasks of one user per call: every method takes ``user_id`` first and runs one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create_task(self, user_id: str, data: TaskCreate | Mapping[str, Any]) -> TaskRead:
        """Insert a task; with an idempotency key already used by this user, return that task."""
        task = _validated(TaskCreate, data)
        now = utc_now()
        values = {
            "user_id": user_id,
            "title": task.title,
            "description": task.description,
            "priority": task.priority.value if task.priority else None,
            "due_at": task.due_at,
            "completed": False,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "idempotency_key": task.idempotency_key,
        }
        async with self._db.transaction(user_id, "create_task") as connection:
            if task.idempotency_key is None:
                row = (await connection.execute(_INSERT_TASK, values)).one()
                return _to_task(row)
            return await self._insert_once(connection, user_id, values, task.idempotency_key)

    async def _insert_once(
        self, connection: AsyncConnection, user_id: str, values: dict[str, Any], key: str
    ) -> TaskRead:
        dialect_insert = postgresql.insert if self._db.is_postgres else sqlite.insert
        statement = (
            dialect_insert(task_table)
            .values(values)
            .on_conflict_do_nothing(
                index_elements=[_c.user_id, _c.idempotency_key],
                index_where=_c.idempotency_key.is_not(None),
            )
            .returning(*_READ_COLUMNS)
        )
        row = (await connection.execute(statement)).one_or_none()
        if row is None:
            # A retry, or a concurrent call that committed first: the original row wins.
            existing = select(*_READ_COLUMNS).where(_c.user_id == user_id, _c.idempotency_key == key)
            row = (await connection.execute(existing)).one()
        return _to_task(row)

    async def get_task(self, user_id: str, task_id: int) -> TaskRead:
        task_id = _valid_id(task_id)
        query = select(*_READ_COLUMNS).where(_c.id == task_id, _c.user_id == user_id, _c.deleted_at.is_(None))
        async with self._db.transaction(user_id, "get_task") as connection:
            row = (await connection.execute(query)).one_or_none()
        if row is None:
            raise TaskNotFound(task_id)
        return _to_task(row)

    async def get_active_tasks(
        self,
        user_id: str,
        filters: TaskFilter | Mapping[str, Any] | None = None,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[TaskRead]:
        """List the user's tasks that are not deleted, in creation order, filtered in SQL."""
        task_filter = _validated(TaskFilter, filters or {})
        limit = check_limit(limit)
        after_id = decode_id_cursor(_ACTIVE_KIND, cursor) if cursor is not None else None
        query = _active_query(
            task_filter.status,
            task_filter.priority is not None,
            task_filter.due_before is not None,
            task_filter.due_after is not None,
            task_filter.overdue,
            task_filter.search is not None,
            after_id is not None,
        )
        parameters: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
        if task_filter.priority is not None:
            parameters["priority"] = task_filter.priority.value
        if task_filter.due_before is not None:
            parameters["due_before"] = task_filter.due_before
        if task_filter.due_after is not None:
            parameters["due_after"] = task_filter.due_after
        if task_filter.overdue:
            parameters["now"] = utc_now()
        if task_filter.search is not None:
            parameters["search"] = _escape_like(task_filter.search)
        if after_id is not None:
            parameters["after_id"] = after_id

        async with self._db.transaction(user_id, "list_tasks") as connection:
            rows = (await connection.execute(query, parameters)).all()
        items = [_to_task(row) for row in rows[:limit]]
        next_cursor = encode_cursor(_ACTIVE_KIND, items[-1].id) if len(rows) > limit else None
        return Page(items, next_cursor)

    async def update_task(
        self,
        user_id: str,
        task_id: int,
        data: TaskUpdate | Mapping[str, Any],
        expected_version: int | None = None,
    ) -> TaskRead:
        """Change the fields present in ``data``; an explicit None clears a nullable field."""
        task_id = _valid_id(task_id)
        expected_version = _check_version(expected_version)
        changes = _validated(TaskUpdate, data).changes()
        if not changes:
            raise InvalidInput("data", "nothing to update; set at least one of title, description, priority, due_at")
        if changes.get("priority") is not None:
            changes["priority"] = changes["priority"].value
        async with self._db.transaction(user_id, "update_task") as connection:
            return await self._update(connection, user_id, task_id, expected_version, changes)

    async def set_completed(
        self, user_id: str, task_id: int, completed: bool = True, expected_version: int | None = None
    ) -> TaskRead:
        """Mark a task completed (or pending again); a task already in that state is returned unchanged."""
        task_id = _valid_id(task_id)
        expected_version = _check_version(expected_version)
        if not isinstance(completed, bool):
            raise InvalidInput("completed", "must be true or false")
        unchanged = _c.completed == completed
        changes = {
            "completed": completed,
            "completed_at": case((unchanged, _c.completed_at), else_=utc_now() if completed else None),
            "version": case((unchanged, _c.version), else_=_c.version + 1),
            "updated_at": case((unchanged, _c.updated_at), else_=utc_now()),
        }
        async with self._db.transaction(user_id, "set_completed") as connection:
            return await self._update(connection, user_id, task_id, expected_version, changes, bump=False)

    async def complete_task(self, user_id: str, task_id: int, expected_version: int | None = None) -> TaskRead:
        return await self.set_completed(user_id, task_id, True, expected_version)

    async def reopen_task(self, user_id: str, task_id: int, expected_version: int | None = None) -> TaskRead:
        return await self.set_completed(user_id, task_id, False, expected_version)

    async def soft_delete_task(self, user_id: str, task_id: int, expected_version: int | None = None) -> TaskRead:
        """Move a task to the trash; ``restore_task`` brings it back."""
        task_id = _valid_id(task_id)
        expected_version = _check_version(expected_version)
        async with self._db.transaction(user_id, "soft_delete_task") as connection:
            return await self._update(connection, user_id, task_id, expected_version, {"deleted_at": utc_now()})

    async def restore_task(self, user_id: str, task_id: int) -> TaskRead:
        """Bring a soft-deleted task back to the active list."""
        task_id = _valid_id(task_id)
        now = utc_now()
        statement = (
            update(task_table)
            .where(_c.id == task_id, _c.user_id == user_id, _c.deleted_at.is_not(None))
            .values(deleted_at=None, version=_c.version + 1, updated_at=now)
            .returning(*_READ_COLUMNS)
        )
        async with self._db.transaction(user_id, "restore_task") as connection:
            row = (await connection.execute(statement)).one_or_none()
        if row is None:
            raise TaskNotFound(task_id)
        return _to_task(row)

    async def list_deleted_tasks(
        self, user_id: str, *, limit: int = DEFAULT_PAGE_SIZE, cursor: str | None = None
    ) -> Page[TaskRead]:
        """List the user's soft-deleted tasks, most recently deleted first."""
        limit = check_limit(limit)
        conditions = [_c.user_id == user_id, _c.deleted_at.is_not(None)]
        if cursor is not None:
            deleted_at, task_id = decode_time_id_cursor(_DELETED_KIND, cursor)
            conditions.append(tuple_(_c.deleted_at, _c.id) < tuple_(deleted_at, task_id))
        query = (
            select(*_READ_COLUMNS).where(*conditions).order_by(_c.deleted_at.desc(), _c.id.desc()).limit(limit + 1)
        )
        async with self._db.transaction(user_id, "list_deleted_tasks") as connection:
            rows = (await connection.execute(query)).all()
        items = [_to_task(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(_DELETED_KIND, _deleted_at(last), last.id)
        return Page(items, next_cursor)

    async def _update(
        self,
        connection: AsyncConnection,
        user_id: str,
        task_id: int,
        expected_version: int | None,
        changes: dict[str, Any],
        *,
        bump: bool = True,
    ) -> TaskRead:
        """Update an active task in one statement; tell not-found from a version conflict after."""
        values = dict(changes)
        if bump:
            values["version"] = _c.version + 1
            values["updated_at"] = utc_now()
        owned = [_c.id == task_id, _c.user_id == user_id, _c.deleted_at.is_(None)]
        conditions = list(owned)
        if expected_version is not None:
            conditions.append(_c.version == expected_version)
        statement = update(task_table).where(*conditions).values(values).returning(*_READ_COLUMNS)
        row = (await connection.execute(statement)).one_or_none()
        if row is not None:
            return _to_task(row)

        current = (await connection.execute(select(_c.version).where(*owned))).scalar_one_or_none()
        if current is None:
            raise TaskNotFound(task_id)
        assert expected_version is not None  # the row exists, so only the version check failed
        raise VersionConflict(task_id, expected_version, current)


def _deleted_at(task: TaskRead) -> datetime:
    assert task.deleted_at is not None
    return task.deleted_at
