"""The per-call transaction every repository method runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.errors import InvalidInput, translate_database_error
from store.models import USER_ID_MAX

# Row-level security policies on PostgreSQL read this setting; it is local to the transaction,
# so a pooled connection never carries one user's id into another user's call.
USER_SETTING = "taskstore.user_id"
_SET_USER = text(f"SELECT set_config('{USER_SETTING}', :user_id, true)")


def check_user_id(user_id: object) -> str:
    """Reject a user id that cannot be a Better Auth id before it reaches SQL."""
    if not isinstance(user_id, str) or not user_id or len(user_id) > USER_ID_MAX:
        raise InvalidInput("user_id", f"must be a non-empty string of at most {USER_ID_MAX} characters")
    if "\x00" in user_id:
        raise InvalidInput("user_id", "must not contain NUL")
    return user_id


class Database:
    """An engine plus the transaction scope of one store call."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @asynccontextmanager
    async def transaction(self, user_id: str, operation: str) -> AsyncIterator[AsyncConnection]:
        """Open one transaction acting for ``user_id``; it commits on success, rolls back on error."""
        check_user_id(user_id)
        with translate_database_error(operation):
            async with self.engine.begin() as connection:
                if self.is_postgres:
                    await connection.execute(_SET_USER, {"user_id": user_id})
                yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()
