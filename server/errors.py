"""Turn store errors into the one-sentence tool errors a model reads."""

from __future__ import annotations

import logging

from mcp.server.mcpserver.exceptions import ToolError

from store import (
    ConfigurationError,
    ConversationNotFound,
    DatabaseUnavailable,
    InvalidCursor,
    InvalidInput,
    StoreError,
    TaskNotFound,
    VersionConflict,
)

logger = logging.getLogger(__name__)

GENERIC_FAILURE = "Internal error while running {tool}; the failure was logged. Retry later or report it."


def tool_error(error: Exception, tool: str) -> ToolError:
    """Map an exception raised under ``tool`` to a ToolError with a short, safe message."""
    if isinstance(error, TaskNotFound):
        return ToolError(
            f"Task {error.item_id} was not found (it may be deleted). Use list_tasks to see task ids, "
            "or list_deleted_tasks for deleted ones."
        )
    if isinstance(error, ConversationNotFound):
        return ToolError(
            f"Conversation {error.item_id} was not found (it may be deleted). Use list_conversations to see ids."
        )
    if isinstance(error, InvalidCursor):
        return ToolError(f"Invalid {error.field}: pass the next_cursor of the previous page unchanged, or omit it.")
    if isinstance(error, InvalidInput):
        return ToolError(f"Invalid {error.field}: {error.message}.")
    if isinstance(error, VersionConflict):
        return ToolError(
            f"Task {error.task_id} changed since you read it: it is at version {error.current}, not "
            f"{error.expected}. Fetch it with get_task, then retry with expected_version={error.current}."
        )
    if isinstance(error, DatabaseUnavailable):
        return ToolError("The database is unavailable right now; retry in a few seconds.")
    if isinstance(error, ConfigurationError):
        logger.error("configuration error in %s: %s", tool, error)
        return ToolError(GENERIC_FAILURE.format(tool=tool))
    if isinstance(error, StoreError):
        logger.error("store error in %s: %s", tool, error)
        return ToolError(GENERIC_FAILURE.format(tool=tool))
    logger.exception("unexpected error in %s", tool, exc_info=error)
    return ToolError(GENERIC_FAILURE.format(tool=tool))
