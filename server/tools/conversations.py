"""Conversation and message tools."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from server.errors import tool_error
from server.schemas import Conversation, ConversationList, DeletedConversation, History, Message
from server.tools import NotBool, ToolContext
from store import Role, StoreError

DEFAULT_LIST_PAGE = 20
DEFAULT_MESSAGE_CHARS = 4000
ECHO_CHARS = 200

ConversationId = Annotated[int, NotBool, Field(description="Id of the conversation, from create_conversation or list_conversations.")]
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def register_conversation_tools(server: MCPServer, context: ToolContext) -> None:
    identity = context.identity

    @server.tool(
        name="create_conversation",
        title="Create conversation",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
    )
    async def create_conversation(
        title: Annotated[str | None, Field(description="Optional title, 1 to 255 characters.")] = None,
    ) -> Conversation:
        """Start a new conversation to keep chat history in, and return its id."""
        user_id = identity.user_id(write=True)
        try:
            return Conversation.of(await context.require_services().conversations.create_conversation(user_id, title))
        except StoreError as error:
            raise tool_error(error, "create_conversation") from error

    @server.tool(name="list_conversations", title="List conversations", annotations=_READ_ONLY)
    async def list_conversations(
        limit: Annotated[int, NotBool, Field(description="Page size, from 1 to 200.")] = DEFAULT_LIST_PAGE,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page; omit for the first.")] = None,
    ) -> ConversationList:
        """List the user's conversations, the one with the latest message first."""
        user_id = identity.user_id(write=False)
        try:
            page = await context.require_services().conversations.list_conversations(user_id, limit=limit, cursor=cursor)
        except StoreError as error:
            raise tool_error(error, "list_conversations") from error
        items = [Conversation.of(item) for item in page.items]
        note = None
        if not items and cursor:
            note = "No more conversations."
        elif not items:
            note = "No conversations yet; start one with create_conversation."
        return ConversationList(
            conversations=items, count=len(items), has_more=page.has_more, next_cursor=page.next_cursor, note=note
        )

    @server.tool(
        name="add_message",
        title="Add message",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
    )
    async def add_message(
        conversation_id: ConversationId,
        role: Annotated[Role, Field(description="user, assistant, system or tool.")],
        content: Annotated[str, Field(description="Message text, 1 to 100,000 characters.")],
        idempotency_key: Annotated[
            str | None,
            Field(description="Unique string for this message; a retry with the same key returns the first message."),
        ] = None,
    ) -> Message:
        """Append a message to a conversation's history and return it (content cut to 200 characters)."""
        user_id = identity.user_id(write=True)
        try:
            message = await context.require_services().conversations.add_message(
                user_id, conversation_id, role, content, idempotency_key
            )
        except StoreError as error:
            raise tool_error(error, "add_message") from error
        return Message.of(message, ECHO_CHARS)

    @server.tool(name="get_history", title="Get conversation history", annotations=_READ_ONLY)
    async def get_history(
        conversation_id: ConversationId,
        limit: Annotated[int, NotBool, Field(description="How many of the latest messages to return, from 1 to 200.")] = 50,
        before: Annotated[
            str | None, Field(description="next_cursor of a previous call, to load the messages just older.")
        ] = None,
        max_chars_per_message: Annotated[
            int, Field(ge=1, le=100_000, description="Cut each message's content to this many characters.")
        ] = DEFAULT_MESSAGE_CHARS,
    ) -> History:
        """Load the latest messages of a conversation, oldest first, to restore the chat context."""
        user_id = identity.user_id(write=False)
        try:
            page = await context.require_services().conversations.get_history(user_id, conversation_id, limit, before)
        except StoreError as error:
            raise tool_error(error, "get_history") from error
        messages = [Message.of(message, max_chars_per_message) for message in page.items]
        return History(
            conversation_id=conversation_id,
            messages=messages,
            count=len(messages),
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @server.tool(
        name="delete_conversation",
        title="Delete conversation",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def delete_conversation(conversation_id: ConversationId) -> DeletedConversation:
        """Delete a conversation and hide its messages. Tools cannot undo this."""
        user_id = identity.user_id(write=True)
        try:
            conversation = await context.require_services().conversations.soft_delete_conversation(user_id, conversation_id)
        except StoreError as error:
            raise tool_error(error, "delete_conversation") from error
        return DeletedConversation(
            conversation=Conversation.of(conversation),
            note="Deleted; its messages are removed for good when the retention purge runs.",
        )
