"""Typed tool results: each becomes a tool's output schema and its structured content."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from store import ConversationRead, MessageRead, Priority, Role, TaskRead

SUMMARY_DESCRIPTION_CHARS = 200


class Task(BaseModel):
    id: int
    title: str
    description: str | None = Field(description="Whole in get_task; in lists cut to 200 characters.")
    description_truncated: bool = Field(default=False, description="True when description was cut for a list.")
    completed: bool
    completed_at: datetime | None
    priority: Priority | None
    due_at: datetime | None
    version: int = Field(description="Increases on every change; pass as expected_version to avoid lost updates.")
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @classmethod
    def full(cls, task: TaskRead) -> Task:
        return cls.model_construct(**_task_fields(task), description_truncated=False)

    @classmethod
    def summary(cls, task: TaskRead) -> Task:
        fields = _task_fields(task)
        description = fields["description"]
        truncated = description is not None and len(description) > SUMMARY_DESCRIPTION_CHARS
        if truncated:
            fields["description"] = description[:SUMMARY_DESCRIPTION_CHARS]
        return cls.model_construct(**fields, description_truncated=truncated)


def _task_fields(task: TaskRead) -> dict[str, object]:
    # The store builds rows without validation, so priority arrives as text. The serializer
    # of this model expects the enum and warns otherwise.
    fields = dict(task.__dict__)
    if fields["priority"] is not None:
        fields["priority"] = Priority(fields["priority"])
    return fields


class TaskList(BaseModel):
    tasks: list[Task]
    count: int = Field(description="Number of tasks on this page.")
    has_more: bool = Field(description="True when another page exists; pass next_cursor as cursor to get it.")
    next_cursor: str | None
    note: str | None = Field(default=None, description="Why the list may be empty or short.")


class ItemError(BaseModel):
    error: str


class TaskItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request, from 0.")
    task_id: int | None = None
    ok: bool
    task: Task | None = None
    error: str | None = None


class TaskBatchResult(BaseModel):
    results: list[TaskItemResult]
    succeeded: int
    failed: int


class DeletedTask(BaseModel):
    task: Task
    undo: str = Field(description="How to bring the task back.")


class Conversation(BaseModel):
    id: int
    title: str | None
    created_at: datetime
    updated_at: datetime = Field(description="Time of the latest message, or of creation.")

    @classmethod
    def of(cls, conversation: ConversationRead) -> Conversation:
        return cls.model_construct(**conversation.__dict__)


class ConversationList(BaseModel):
    conversations: list[Conversation]
    count: int
    has_more: bool
    next_cursor: str | None
    note: str | None = None


class DeletedConversation(BaseModel):
    conversation: Conversation
    note: str


class Message(BaseModel):
    id: int
    conversation_id: int
    role: Role
    content: str
    content_truncated: bool = False
    created_at: datetime

    @classmethod
    def of(cls, message: MessageRead, max_chars: int | None = None) -> Message:
        fields = dict(message.__dict__)
        fields["role"] = Role(fields["role"])
        truncated = max_chars is not None and len(fields["content"]) > max_chars
        if truncated:
            fields["content"] = fields["content"][:max_chars]
        return cls.model_construct(**fields, content_truncated=truncated)


class History(BaseModel):
    conversation_id: int
    messages: list[Message] = Field(description="Oldest first.")
    count: int
    has_more: bool = Field(description="True when older messages exist; pass next_cursor as before to load them.")
    next_cursor: str | None
