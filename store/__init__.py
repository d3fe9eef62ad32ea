"""Persistence for taskstore: user-scoped repositories over PostgreSQL or SQLite."""

from store.conversations import ConversationRepository
from store.database import Database
from store.engine import DatabaseConfig, create_engine, database_config
from store.errors import (
    ConfigurationError,
    ConversationNotFound,
    DatabaseUnavailable,
    InvalidCursor,
    InvalidInput,
    NotFound,
    StoreError,
    TaskNotFound,
    VersionConflict,
)
from store.models import ConversationRead, MessageRead, Priority, Role, TaskCreate, TaskFilter, TaskRead, TaskUpdate
from store.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from store.tasks import TaskRepository

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "ConfigurationError",
    "ConversationNotFound",
    "ConversationRead",
    "ConversationRepository",
    "Database",
    "DatabaseConfig",
    "DatabaseUnavailable",
    "InvalidCursor",
    "InvalidInput",
    "MessageRead",
    "NotFound",
    "Page",
    "Priority",
    "Role",
    "StoreError",
    "TaskCreate",
    "TaskFilter",
    "TaskNotFound",
    "TaskRead",
    "TaskRepository",
    "TaskUpdate",
    "VersionConflict",
    "create_engine",
    "database_config",
]
