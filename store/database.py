"""The per-call transaction every repository method runs in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.errors import InvalidInput, translate_database_error
from store.models import USER_ID_MAX

# Row-level security policies on PostgreSQL read this setting. It is local to the transaction,
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
            connection = await self._begin(user_id)
            try:
                yield connection
                await connection.commit()
            finally:
                # Returning the connection to the pool rolls back what was not committed; shielded
                # as in AsyncConnection.__aexit__, so a cancelled call still gives it back.
                await asyncio.shield(connection.close())

    async def _begin(self, user_id: str) -> AsyncConnection:
        """Check out a connection, begin, and set the user; retry once on a connection found dead.

        The pool does not ping a connection at checkout (on asyncpg that is BEGIN, a query and
        ROLLBACK: three round trips per call). A connection that died while pooled (a
        PostgreSQL restart, a Neon compute suspend) fails at its first statement instead,
        before any work was done, so the call starts again on a fresh connection. The error
        also marks the whole pool for replacement.
        """
        for attempt in (1, 2):
            connection = await self.engine.connect()
            try:
                await connection.begin()
                if self.is_postgres:
                    await connection.execute(_SET_USER, {"user_id": user_id})
                return connection
            except DBAPIError as error:
                await connection.close()
                if attempt == 2 or not error.connection_invalidated:
                    raise
            except BaseException:
                await connection.close()
                raise
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        await self.engine.dispose()
