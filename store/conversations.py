"""User-scoped conversation and message repository."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Integer, Select, bindparam, exists, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from store.cursor import decode_id_cursor, decode_time_id_cursor, encode_cursor
from store.database import Database
from store.errors import ConversationNotFound, InvalidInput
from store.models import (
    ID_MAX,
    Conversation,
    ConversationCreate,
    ConversationRead,
    Message,
    MessageCreate,
    MessageRead,
    Role,
)
from store.pagination import DEFAULT_PAGE_SIZE, Page, check_limit
from store.rows import constructor
from store.types import utc_now

conversation_table = Conversation.__table__
message_table = Message.__table__
_conv = conversation_table.c
_msg = message_table.c
_CONVERSATION_COLUMNS = tuple(_conv[name] for name in ConversationRead.model_fields)
_MESSAGE_COLUMNS = tuple(_msg[name] for name in MessageRead.model_fields)
_CONVERSATION_KIND = "c"
_HISTORY_KIND = "m"


_build_conversation = constructor(ConversationRead)
_build_message = constructor(MessageRead)
# Statements read _CONVERSATION_COLUMNS and _MESSAGE_COLUMNS, in these orders.
_CONVERSATION_FIELDS = tuple(ConversationRead.model_fields)
_MESSAGE_FIELDS = tuple(MessageRead.model_fields)


def _to_conversation(row: Row[Any]) -> ConversationRead:
    return _build_conversation(dict(zip(_CONVERSATION_FIELDS, row)))


_ROLES = {role.value: role for role in Role}


def _to_message(row: Row[Any]) -> MessageRead:
    # As in store.tasks: the enum field gets the enum, not the column's text.
    values = dict(zip(_MESSAGE_FIELDS, row))
    values["role"] = _ROLES[values["role"]]
    return _build_message(values)


def _valid_conversation_id(conversation_id: object) -> int:
    if not isinstance(conversation_id, int) or isinstance(conversation_id, bool):
        raise InvalidInput("conversation_id", "must be an integer")
    if not 0 < conversation_id <= ID_MAX:
        raise ConversationNotFound(conversation_id)
    return conversation_id


def _validate(model: type[Any], data: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInput.from_validation_error(error) from None


# Built once with named parameters, so a call neither rebuilds them nor recomputes their cache keys.
_ACTIVE_CONVERSATION = select(
    exists().where(
        _conv.id == bindparam("conversation_id"), _conv.user_id == bindparam("user_id"), _conv.deleted_at.is_(None)
    )
)


@lru_cache(maxsize=2)
def _history_query(before: bool) -> Select[Any]:
    """Return the history statement, with or without the ``before`` cursor condition."""
    conditions = [_msg.conversation_id == bindparam("conversation_id"), _msg.user_id == bindparam("user_id")]
    if before:
        conditions.append(_msg.id < bindparam("before_id"))
    return select(*_MESSAGE_COLUMNS).where(*conditions).order_by(_msg.id.desc()).limit(bindparam("limit", type_=Integer))


class _Replayed(Exception):
    """Carries the message a retried idempotency key already created, out of its transaction."""

    def __init__(self, message: MessageRead) -> None:
        self.message = message


class ConversationRepository:
    """Conversations and their messages, one user per call and one transaction per method."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create_conversation(self, user_id: str, title: str | None = None) -> ConversationRead:
        data = _validate(ConversationCreate, {"title": title})
        now = utc_now()
        statement = (
            insert(conversation_table)
            .values(user_id=user_id, title=data.title, created_at=now, updated_at=now)
            .returning(*_CONVERSATION_COLUMNS)
        )
        async with self._db.transaction(user_id, "create_conversation") as connection:
            row = (await connection.execute(statement)).one()
        return _to_conversation(row)

    async def get_conversation(self, user_id: str, conversation_id: int) -> ConversationRead:
        conversation_id = _valid_conversation_id(conversation_id)
        query = select(*_CONVERSATION_COLUMNS).where(
            _conv.id == conversation_id, _conv.user_id == user_id, _conv.deleted_at.is_(None)
        )
        async with self._db.transaction(user_id, "get_conversation") as connection:
            row = (await connection.execute(query)).one_or_none()
        if row is None:
            raise ConversationNotFound(conversation_id)
        return _to_conversation(row)

    async def list_conversations(
        self, user_id: str, *, limit: int = DEFAULT_PAGE_SIZE, cursor: str | None = None
    ) -> Page[ConversationRead]:
        """List the user's conversations, the one with the latest message first."""
        limit = check_limit(limit)
        conditions = [_conv.user_id == user_id, _conv.deleted_at.is_(None)]
        if cursor is not None:
            updated_at, conversation_id = decode_time_id_cursor(_CONVERSATION_KIND, cursor)
            conditions.append(tuple_(_conv.updated_at, _conv.id) < tuple_(updated_at, conversation_id))
        query = (
            select(*_CONVERSATION_COLUMNS)
            .where(*conditions)
            .order_by(_conv.updated_at.desc(), _conv.id.desc())
            .limit(limit + 1)
        )
        async with self._db.transaction(user_id, "list_conversations") as connection:
            rows = (await connection.execute(query)).all()
        items = [_to_conversation(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(_CONVERSATION_KIND, items[-1].updated_at, items[-1].id)
        return Page(items, next_cursor)

    async def add_message(
        self,
        user_id: str,
        conversation_id: int,
        role: str,
        content: str,
        idempotency_key: str | None = None,
    ) -> MessageRead:
        """Append a message; with an idempotency key already used by this user, return that message.

        A retry changes nothing, not even the conversation's ``updated_at``. A key already used
        in another conversation is an error rather than a silent reply from elsewhere.
        """
        conversation_id = _valid_conversation_id(conversation_id)
        message = _validate(MessageCreate, {"role": role, "content": content, "idempotency_key": idempotency_key})
        now = utc_now()
        touch = (
            update(conversation_table)
            .where(_conv.id == conversation_id, _conv.user_id == user_id, _conv.deleted_at.is_(None))
            .values(updated_at=now)
            .returning(_conv.id)
        )
        values = {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "role": message.role.value,
            "content": message.content,
            "created_at": now,
            "idempotency_key": message.idempotency_key,
        }
        try:
            async with self._db.transaction(user_id, "add_message") as connection:
                # Checks ownership and that the conversation is not deleted, and orders concurrent
                # writers to one conversation on PostgreSQL by its row lock.
                if (await connection.execute(touch)).one_or_none() is None:
                    raise ConversationNotFound(conversation_id)
                if message.idempotency_key is None:
                    statement = insert(message_table).values(values).returning(*_MESSAGE_COLUMNS)
                    return _to_message((await connection.execute(statement)).one())

                dialect_insert = postgresql.insert if self._db.is_postgres else sqlite.insert
                statement = (
                    dialect_insert(message_table)
                    .values(values)
                    .on_conflict_do_nothing(
                        index_elements=[_msg.user_id, _msg.idempotency_key],
                        index_where=_msg.idempotency_key.is_not(None),
                    )
                    .returning(*_MESSAGE_COLUMNS)
                )
                row = (await connection.execute(statement)).one_or_none()
                if row is not None:
                    return _to_message(row)
                existing = select(*_MESSAGE_COLUMNS).where(
                    _msg.user_id == user_id, _msg.idempotency_key == message.idempotency_key
                )
                # Raising rolls the transaction back, so a retry does not move the conversation up.
                raise _Replayed(_to_message((await connection.execute(existing)).one()))
        except _Replayed as replay:
            original = replay.message
        if original.conversation_id != conversation_id:
            raise InvalidInput(
                "idempotency_key",
                f"was already used for a message in conversation {original.conversation_id}; use a new key",
            )
        return original

    async def get_history(
        self,
        user_id: str,
        conversation_id: int,
        limit: int = DEFAULT_PAGE_SIZE,
        before: str | None = None,
    ) -> Page[MessageRead]:
        """Return the latest ``limit`` messages before the cursor, oldest first.

        ``next_cursor`` of the page, passed back as ``before``, loads the messages just older
        than the ones returned.
        """
        conversation_id = _valid_conversation_id(conversation_id)
        limit = check_limit(limit)
        parameters: dict[str, Any] = {"conversation_id": conversation_id, "user_id": user_id, "limit": limit + 1}
        if before is not None:
            parameters["before_id"] = decode_id_cursor(_HISTORY_KIND, before, "before")
        async with self._db.transaction(user_id, "get_history") as connection:
            if not (await connection.execute(_ACTIVE_CONVERSATION, parameters)).scalar():
                raise ConversationNotFound(conversation_id)
            rows = (await connection.execute(_history_query(before is not None), parameters)).all()
        newest_first = [_to_message(row) for row in rows[:limit]]
        next_cursor = encode_cursor(_HISTORY_KIND, newest_first[-1].id) if len(rows) > limit else None
        newest_first.reverse()
        return Page(newest_first, next_cursor)

    async def soft_delete_conversation(self, user_id: str, conversation_id: int) -> ConversationRead:
        """Hide a conversation and its messages; the purge removes them for good later."""
        conversation_id = _valid_conversation_id(conversation_id)
        statement = (
            update(conversation_table)
            .where(_conv.id == conversation_id, _conv.user_id == user_id, _conv.deleted_at.is_(None))
            .values(deleted_at=utc_now())
            .returning(*_CONVERSATION_COLUMNS)
        )
        async with self._db.transaction(user_id, "soft_delete_conversation") as connection:
            row = (await connection.execute(statement)).one_or_none()
        if row is None:
            raise ConversationNotFound(conversation_id)
        return _to_conversation(row)
