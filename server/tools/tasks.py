"""Task tools."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from server.errors import tool_error
from server.schemas import DeletedTask, Task, TaskBatchResult, TaskItemResult, TaskList
from server.tools import NotBool, ToolContext, provided_arguments
from store import Priority, StoreError, TaskFilter

MAX_BATCH = 50
DEFAULT_LIST_PAGE = 20

TaskId = Annotated[int, NotBool, Field(description="Id of the task, as returned by create_task or list_tasks.")]
ExpectedVersion = Annotated[
    int | None,
    NotBool,
    Field(
        description="The task's version when you last read it. If the task changed since, the call fails "
        "with the current version instead of overwriting the change. Omit to skip the check."
    ),
]
Title = Annotated[str, Field(description="Short title, 1 to 255 characters; leading and trailing spaces are removed.")]
Description = Annotated[str | None, Field(description="Longer notes, up to 10,000 characters.")]
PriorityArg = Annotated[Priority | None, Field(description="low, medium or high.")]
DueAt = Annotated[
    datetime | None,
    Field(description="Due date and time in ISO 8601 with a UTC offset, for example 2026-12-05T17:00:00Z."),
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Any unique string (up to 255 characters) for this request. Retrying with the same key "
        "returns the task created the first time instead of a duplicate."
    ),
]
Limit = Annotated[int, NotBool, Field(description="Page size, from 1 to 200.")]
Cursor = Annotated[str | None, Field(description="next_cursor from the previous page; omit for the first page.")]


class NewTask(BaseModel):
    """One task of a create_tasks call.

    Values are only type-checked here, as text, so that a wrong value (an unknown priority, a
    date without offset) fails its own item in the store instead of rejecting the whole batch.
    The schema still publishes the allowed priorities and the date-time format.
    """

    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = None
    priority: Annotated[
        str | None, Field(description="low, medium or high.", json_schema_extra={"enum": ["low", "medium", "high", None]})
    ] = None
    due_at: Annotated[
        str | None,
        Field(
            description="Due date and time in ISO 8601 with a UTC offset, for example 2026-12-05T17:00:00Z.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None
    idempotency_key: IdempotencyKey = None


_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def _empty_note(filters: TaskFilter) -> str:
    active = [
        f"{name}={value}"
        for name, value in filters.model_dump(exclude_defaults=True, mode="json").items()
        if value not in (None, False)
    ]
    if active == ["status=pending"]:
        # list_tasks filters on pending by default; a caller who passed no filter gets this.
        return "No pending tasks. Create one with create_task, or pass status='all' to include completed ones."
    if active:
        return f"No tasks match the filters ({', '.join(active)}). Try status='all' or fewer filters."
    return "No tasks yet. Create one with create_task."


def register_task_tools(server: MCPServer, context: ToolContext) -> None:
    identity = context.identity

    @server.tool(
        name="create_task",
        title="Create task",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
    )
    async def create_task(
        title: Title,
        description: Description = None,
        priority: PriorityArg = None,
        due_at: DueAt = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Task:
        """Add a task to the user's todo list and return it with its id.

        Use when the user asks to remember, add or schedule something to do. Pass an
        idempotency_key when you may retry, so a retry cannot create a duplicate.
        """
        user_id = identity.user_id(write=True)
        data = {"title": title, "description": description, "priority": priority, "due_at": due_at,
                "idempotency_key": idempotency_key}
        try:
            task = await context.require_services().tasks.create_task(user_id, data)
        except StoreError as error:
            raise tool_error(error, "create_task") from error
        return Task.full(task)

    @server.tool(
        name="create_tasks",
        title="Create several tasks",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
    )
    async def create_tasks(
        tasks: Annotated[
            list[NewTask],
            Field(min_length=1, max_length=MAX_BATCH, description="1 to 50 tasks, each with the fields of create_task."),
        ],
    ) -> TaskBatchResult:
        """Add several tasks at once and return a result per item, in request order.

        Each item is stored on its own: an invalid item fails alone and the others are kept.
        Use for lists such as a shopping list or the steps of a plan.
        """
        user_id = identity.user_id(write=True)
        repository = context.require_services().tasks
        results: list[TaskItemResult] = []
        for index, item in enumerate(tasks):
            try:
                task = await repository.create_task(user_id, item.model_dump())
            except StoreError as error:
                message = str(tool_error(error, "create_tasks"))
                results.append(TaskItemResult(index=index, ok=False, error=message))
                continue
            results.append(TaskItemResult(index=index, task_id=task.id, ok=True, task=Task.summary(task)))
        succeeded = sum(result.ok for result in results)
        return TaskBatchResult(results=results, succeeded=succeeded, failed=len(results) - succeeded)

    @server.tool(name="list_tasks", title="List tasks", annotations=_READ_ONLY)
    async def list_tasks(
        status: Annotated[
            Literal["pending", "completed", "all"], Field(description="pending (default), completed or all.")
        ] = "pending",
        priority: Annotated[Priority | None, Field(description="Only tasks of this priority.")] = None,
        due_before: Annotated[datetime | None, Field(description="Only tasks due before this time (ISO 8601 with offset).")] = None,
        due_after: Annotated[datetime | None, Field(description="Only tasks due at or after this time (ISO 8601 with offset).")] = None,
        overdue: Annotated[bool, Field(description="Only pending tasks whose due time has passed.")] = False,
        search: Annotated[
            str | None, Field(description="Case-insensitive text to find in title or description, matched literally.")
        ] = None,
        limit: Limit = DEFAULT_LIST_PAGE,
        cursor: Cursor = None,
    ) -> TaskList:
        """List the user's tasks (not deleted), oldest first, one page at a time.

        Descriptions are cut to 200 characters; use get_task for the whole task. When
        has_more is true, call again with cursor=next_cursor and the same filters.
        """
        user_id = identity.user_id(write=False)
        filters = {"status": status, "priority": priority, "due_before": due_before, "due_after": due_after,
                   "overdue": overdue, "search": search}
        try:
            page = await context.require_services().tasks.get_active_tasks(user_id, filters, limit=limit, cursor=cursor)
        except StoreError as error:
            raise tool_error(error, "list_tasks") from error
        items = [Task.summary(task) for task in page.items]
        note = None
        if not items:
            note = "No more tasks on this page." if cursor else _empty_note(TaskFilter.model_validate(filters))
        return TaskList(tasks=items, count=len(items), has_more=page.has_more, next_cursor=page.next_cursor, note=note)

    @server.tool(name="get_task", title="Get task", annotations=_READ_ONLY)
    async def get_task(task_id: TaskId) -> Task:
        """Return one task with its whole description and current version."""
        user_id = identity.user_id(write=False)
        try:
            return Task.full(await context.require_services().tasks.get_task(user_id, task_id))
        except StoreError as error:
            raise tool_error(error, "get_task") from error

    @server.tool(
        name="update_task",
        title="Update task",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def update_task(
        task_id: TaskId,
        title: Annotated[str | None, Field(description="New title, 1 to 255 characters. Cannot be null.")] = None,
        description: Annotated[str | None, Field(description="New notes, up to 10,000 characters; null clears them.")] = None,
        priority: Annotated[Priority | None, Field(description="low, medium or high; null clears it.")] = None,
        due_at: Annotated[
            datetime | None, Field(description="New due time (ISO 8601 with offset); null clears it.")
        ] = None,
        expected_version: ExpectedVersion = None,
    ) -> Task:
        """Change some fields of a task and return the updated task.

        Only the fields you pass change; pass null to clear description, priority or due_at.
        To complete or reopen a task use complete_task.
        """
        user_id = identity.user_id(write=True)
        sent = provided_arguments.get()
        values = {"title": title, "description": description, "priority": priority, "due_at": due_at}
        changes = {name: value for name, value in values.items() if name in sent}
        if not changes:
            raise ToolError("Nothing to update: pass at least one of title, description, priority or due_at.")
        try:
            task = await context.require_services().tasks.update_task(user_id, task_id, changes, expected_version)
        except StoreError as error:
            raise tool_error(error, "update_task") from error
        return Task.full(task)

    @server.tool(
        name="complete_task",
        title="Complete or reopen task",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    )
    async def complete_task(
        task_id: TaskId,
        completed: Annotated[bool, Field(description="true marks the task done; false reopens it.")] = True,
        expected_version: ExpectedVersion = None,
    ) -> Task:
        """Mark a task as done, or reopen it with completed=false, and return it."""
        user_id = identity.user_id(write=True)
        try:
            task = await context.require_services().tasks.set_completed(user_id, task_id, completed, expected_version)
        except StoreError as error:
            raise tool_error(error, "complete_task") from error
        return Task.full(task)

    @server.tool(
        name="complete_tasks",
        title="Complete or reopen several tasks",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    )
    async def complete_tasks(
        task_ids: Annotated[list[Annotated[int, NotBool]], Field(min_length=1, max_length=MAX_BATCH, description="1 to 50 task ids.")],
        completed: Annotated[bool, Field(description="true marks them done; false reopens them.")] = True,
    ) -> TaskBatchResult:
        """Mark several tasks as done (or reopen them) and return a result per id, in request order."""
        user_id = identity.user_id(write=True)
        repository = context.require_services().tasks
        results: list[TaskItemResult] = []
        for index, task_id in enumerate(task_ids):
            try:
                task = await repository.set_completed(user_id, task_id, completed)
            except StoreError as error:
                message = str(tool_error(error, "complete_tasks"))
                results.append(TaskItemResult(index=index, task_id=task_id, ok=False, error=message))
                continue
            results.append(TaskItemResult(index=index, task_id=task_id, ok=True, task=Task.summary(task)))
        succeeded = sum(result.ok for result in results)
        return TaskBatchResult(results=results, succeeded=succeeded, failed=len(results) - succeeded)

    @server.tool(
        name="delete_task",
        title="Delete task",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def delete_task(task_id: TaskId, expected_version: ExpectedVersion = None) -> DeletedTask:
        """Move a task to the trash. It can be brought back with restore_task until it is purged."""
        user_id = identity.user_id(write=True)
        try:
            task = await context.require_services().tasks.soft_delete_task(user_id, task_id, expected_version)
        except StoreError as error:
            raise tool_error(error, "delete_task") from error
        return DeletedTask(task=Task.summary(task), undo=f"Call restore_task with task_id={task.id} to undo.")

    @server.tool(
        name="restore_task",
        title="Restore deleted task",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    )
    async def restore_task(task_id: TaskId) -> Task:
        """Bring a deleted task back to the list; list_deleted_tasks shows which can be restored."""
        user_id = identity.user_id(write=True)
        try:
            return Task.full(await context.require_services().tasks.restore_task(user_id, task_id))
        except StoreError as error:
            raise tool_error(error, "restore_task") from error

    @server.tool(name="list_deleted_tasks", title="List deleted tasks", annotations=_READ_ONLY)
    async def list_deleted_tasks(limit: Limit = DEFAULT_LIST_PAGE, cursor: Cursor = None) -> TaskList:
        """List the user's deleted tasks, most recently deleted first, so one can be restored."""
        user_id = identity.user_id(write=False)
        try:
            page = await context.require_services().tasks.list_deleted_tasks(user_id, limit=limit, cursor=cursor)
        except StoreError as error:
            raise tool_error(error, "list_deleted_tasks") from error
        items = [Task.summary(task) for task in page.items]
        note = None
        if not items and cursor:
            note = "No more deleted tasks."
        elif not items:
            note = "The trash is empty."
        return TaskList(tasks=items, count=len(items), has_more=page.has_more, next_cursor=page.next_cursor, note=note)
