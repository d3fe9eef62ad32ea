"""Random sequences of every store operation for several users, checked against a model.

A hypothesis state machine plays five users against one database. After each call it
compares the result with a small in-memory model of what that user should see: ids,
titles, versions, completion, the trash, message order, page counts. Any row of another
user in a result, any difference between "another user's id" and "an id that does not
exist", or any cursor that carries rows across users fails the test.

The store is async and hypothesis drives a state machine synchronously, so each test owns
an event loop and an engine of its own and runs every store call to completion on it.

By default (50 examples) it runs about 4,500 store operations per backend. For a longer run
set ``TASKSTORE_FUZZ_EXAMPLES``: each example is ``STEPS_PER_EXAMPLE`` steps plus the paging
they cause, so ``TASKSTORE_FUZZ_EXAMPLES=250`` runs about 23,000 operations per backend. The
count is printed with ``-s`` and recorded as the ``fuzz_operations`` property (``--junitxml``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from server.errors import tool_error
from store import (
    InvalidInput,
    ConversationNotFound,
    ConversationRepository,
    Database,
    NotFound,
    TaskNotFound,
    TaskRepository,
    VersionConflict,
    create_engine,
    database_config,
)
from store.cursor import decode_id_cursor

EXAMPLES_ENV = "TASKSTORE_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 50
STEPS_PER_EXAMPLE = 50
USERS = 5
# Ids this close to the BIGINT limit are never reached by a sequence in a test database.
MISSING_ID_BASE = 2**62

T = TypeVar("T")

# ASCII plus the LIKE wildcards and the escape character, so search must match them literally.
# PostgreSQL's lower() under the C collation folds ASCII only, so other letters would test the
# collation rather than the store.
_SEARCH_ALPHABET = "abcAB %_\\"
titles = st.text(alphabet=_SEARCH_ALPHABET + "xyz-", min_size=1, max_size=12).filter(lambda s: s.strip())
descriptions = st.one_of(st.none(), st.text(alphabet=_SEARCH_ALPHABET + "\n\t", max_size=20))
priorities = st.sampled_from([None, "low", "medium", "high"])
task_keys = st.sampled_from([None, "k1", "k2"])
message_keys = st.sampled_from([None, "m1", "m2"])
# Message content is stored verbatim: any printable text, line breaks and non-ASCII included.
contents = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x7f") | st.sampled_from("\n\t\r"),
    min_size=1,
    max_size=30,
)
users = st.integers(min_value=0, max_value=USERS - 1)
# Which id a call targets: one of the caller's, any user's, or one that cannot exist.
aims = st.sampled_from(["own", "own", "own", "any", "missing"])
picks = st.integers(min_value=0, max_value=1_000)
version_modes = st.sampled_from([None, "current", "stale"])
page_sizes = st.sampled_from([1, 2, 3, 50])


@dataclass
class ModelTask:
    owner: int
    title: str
    description: str | None
    priority: str | None
    key: str | None
    completed: bool = False
    version: int = 1
    deleted: bool = False
    deleted_seq: int = 0


@dataclass
class ModelMessage:
    id: int
    role: str
    content: str


@dataclass
class ModelConversation:
    owner: int
    title: str | None
    touched_seq: int
    deleted: bool = False
    messages: list[ModelMessage] = field(default_factory=list)


@dataclass
class Counter:
    operations: int = 0
    not_found_checks: int = 0
    foreign_cursor_checks: int = 0
    replays: int = 0


class Runner:
    """Runs the store's coroutines on a private event loop and counts the calls."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.database = Database(create_engine(database_config(database_url), pool_size=2, max_overflow=0))
        self.tasks = TaskRepository(self.database)
        self.conversations = ConversationRepository(self.database)
        self.counter = Counter()

    def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        self.counter.operations += 1
        return self.loop.run_until_complete(operation())

    def fails(self, operation: Callable[[], Awaitable[Any]]) -> Exception:
        """Run a call that must raise, and return what it raised."""
        try:
            result = self.call(operation)
        except Exception as error:  # the caller checks the type
            return error
        raise AssertionError(f"expected an error, got {result!r}")

    def close(self) -> None:
        self.loop.run_until_complete(self.database.dispose())
        self.loop.close()


class IsolationMachine(RuleBasedStateMachine):
    runner: Runner  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        # Fresh ids per example: examples share one database and must not see each other.
        run = uuid.uuid4().hex[:12]
        self.user_ids = [f"fuzz-{run}-{number}" for number in range(USERS)]
        self.model_tasks: dict[int, ModelTask] = {}
        self.model_conversations: dict[int, ModelConversation] = {}
        self.task_keys: dict[tuple[int, str], int] = {}
        self.message_keys: dict[tuple[int, str], tuple[int, ModelMessage]] = {}
        self.clock = 0
        self.missing_offset = 0

    # --- helpers ----------------------------------------------------------------------------

    @property
    def store(self) -> Runner:
        return self.runner

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def missing_id(self) -> int:
        self.missing_offset += 1
        return MISSING_ID_BASE + self.missing_offset

    def pick_id(self, ids: dict[int, Any], user: int, aim: str, pick: int) -> int:
        if aim == "missing" or not ids:
            return self.missing_id()
        if aim == "own":
            own = sorted(item_id for item_id, item in ids.items() if item.owner == user)
            if own:
                return own[pick % len(own)]
        every = sorted(ids)
        return every[pick % len(every)]

    def visible_task(self, user: int, task_id: int) -> ModelTask | None:
        task = self.model_tasks.get(task_id)
        if task is None or task.owner != user or task.deleted:
            return None
        return task

    def visible_conversation(self, user: int, conversation_id: int) -> ModelConversation | None:
        conversation = self.model_conversations.get(conversation_id)
        if conversation is None or conversation.owner != user or conversation.deleted:
            return None
        return conversation

    def check_task(self, read: Any, task_id: int, user: int) -> None:
        expected = self.model_tasks[task_id]
        assert read.id == task_id
        assert expected.owner == user, f"user {user} received task {task_id} of user {expected.owner}"
        assert read.title == expected.title
        assert read.description == expected.description
        assert read.priority == expected.priority
        assert read.completed is expected.completed
        assert (read.completed_at is not None) is expected.completed
        assert read.version == expected.version
        assert (read.deleted_at is not None) is expected.deleted

    def check_not_found(self, error: Exception, kind: type[NotFound], item_id: int, call: Callable[[int], Any]) -> None:
        """The error for ``item_id`` must equal, id aside, the error for an id that never existed."""
        assert type(error) is kind, f"expected {kind.__name__}, got {type(error).__name__}: {error}"
        missing = self.missing_id()
        reference = self.store.fails(lambda: call(missing))
        assert type(reference) is kind
        assert str(error).replace(str(item_id), "ID") == str(reference).replace(str(missing), "ID")
        tool = "get_task" if kind is TaskNotFound else "get_history"
        tool_message = str(tool_error(error, tool)).replace(str(item_id), "ID")
        assert tool_message == str(tool_error(reference, tool)).replace(str(missing), "ID")
        self.store.counter.not_found_checks += 1

    def expected_active(self, user: int, status: str, priority: str | None, search: str | None) -> list[int]:
        ids = []
        for task_id, task in sorted(self.model_tasks.items()):
            if task.owner != user or task.deleted:
                continue
            if status == "pending" and task.completed or status == "completed" and not task.completed:
                continue
            if priority is not None and task.priority != priority:
                continue
            if search is not None:
                haystacks = [task.title.lower(), (task.description or "").lower()]
                if not any(search.lower() in haystack for haystack in haystacks):
                    continue
            ids.append(task_id)
        return ids

    def expected_deleted(self, user: int) -> list[int]:
        deleted = [(task.deleted_seq, task_id) for task_id, task in self.model_tasks.items() if task.owner == user and task.deleted]
        return [task_id for _, task_id in sorted(deleted, reverse=True)]

    def expected_conversations(self, user: int) -> list[int]:
        active = [
            (conversation.touched_seq, conversation_id)
            for conversation_id, conversation in self.model_conversations.items()
            if conversation.owner == user and not conversation.deleted
        ]
        return [conversation_id for _, conversation_id in sorted(active, reverse=True)]

    def all_pages(self, fetch: Callable[[str | None], Awaitable[Any]], limit: int) -> list[list[Any]]:
        pages: list[list[Any]] = []
        cursor: str | None = None
        for _ in range(1_000):
            page = self.store.call(lambda: fetch(cursor))
            assert len(page.items) <= limit
            pages.append(page.items)
            if page.next_cursor is None:
                return pages
            # A cursor is only handed out when more rows follow, so no page but the last is short.
            assert len(page.items) == limit
            cursor = page.next_cursor
        raise AssertionError("pagination did not end after 1,000 pages")

    def expect_version_outcome(self, task: ModelTask | None, mode: str | None) -> int | None:
        if mode is None or task is None:
            return None
        if mode == "current":
            return task.version
        return task.version - 1 if task.version > 1 else task.version + 3

    @initialize()
    def seed(self) -> None:
        """Give every user two tasks and a conversation of two messages, with the same keys.

        Every user then has rows to page through from the first step on, and every
        idempotency key already exists for the other users.
        """
        for user in range(USERS):
            self.create_task(user, f"seed {user}", None, None, "k1")
            self.create_task(user, f"seed {user} b", "notes", "high", None)
            self.create_conversation(user, f"seed {user}")
            conversation_id = max(self.model_conversations)
            self.add_message(user, "own", 0, "user", f"hello from {user}", "m1")
            self.add_message(user, "own", 0, "assistant", "hi", None)
            assert self.model_conversations[conversation_id].owner == user

    # --- tasks ------------------------------------------------------------------------------

    @rule(user=users, title=titles, description=descriptions, priority=priorities, key=task_keys)
    def create_task(self, user: int, title: str, description: str | None, priority: str | None, key: str | None) -> None:
        data = {"title": title, "description": description, "priority": priority, "idempotency_key": key}
        read = self.store.call(lambda: self.store.tasks.create_task(self.user_ids[user], data))
        if key is not None and (user, key) in self.task_keys:
            # A retry returns the first task, in its current state, and creates nothing.
            assert read.id == self.task_keys[(user, key)]
            self.store.counter.replays += 1
        else:
            assert read.id not in self.model_tasks, f"create_task returned existing id {read.id}"
            self.model_tasks[read.id] = ModelTask(user, title.strip(), description, priority, key)
            if key is not None:
                self.task_keys[(user, key)] = read.id
        self.check_task(read, read.id, user)

    @rule(user=users, aim=aims, pick=picks)
    def get_task(self, user: int, aim: str, pick: int) -> None:
        task_id = self.pick_id(self.model_tasks, user, aim, pick)
        owner = self.user_ids[user]
        if self.visible_task(user, task_id) is None:
            error = self.store.fails(lambda: self.store.tasks.get_task(owner, task_id))
            self.check_not_found(error, TaskNotFound, task_id, lambda missing: self.store.tasks.get_task(owner, missing))
            return
        self.check_task(self.store.call(lambda: self.store.tasks.get_task(owner, task_id)), task_id, user)

    @rule(
        user=users,
        status=st.sampled_from(["all", "pending", "completed"]),
        priority=priorities,
        search=st.one_of(st.none(), st.text(alphabet=_SEARCH_ALPHABET, min_size=1, max_size=3)),
        limit=page_sizes,
    )
    def list_active(self, user: int, status: str, priority: str | None, search: str | None, limit: int) -> None:
        filters = {"status": status, "priority": priority, "search": search}
        owner = self.user_ids[user]
        pages = self.all_pages(lambda cursor: self.store.tasks.get_active_tasks(owner, filters, limit=limit, cursor=cursor), limit)
        listed = [task.id for page in pages for task in page]
        expected = self.expected_active(user, status, priority, search)
        assert listed == expected
        assert len(pages) == max(1, -(-len(expected) // limit))
        for page in pages:
            for task in page:
                self.check_task(task, task.id, user)

    @rule(
        user=users,
        aim=aims,
        pick=picks,
        title=st.one_of(st.none(), titles),
        description=st.one_of(st.just("<unset>"), descriptions),
        priority=st.one_of(st.just("<unset>"), priorities),
        mode=version_modes,
    )
    def update_task(
        self, user: int, aim: str, pick: int, title: str | None, description: str | None, priority: str | None, mode: str | None
    ) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if description != "<unset>":
            changes["description"] = description
        if priority != "<unset>":
            changes["priority"] = priority
        if not changes:
            changes["title"] = "fallback"
        task_id = self.pick_id(self.model_tasks, user, aim, pick)
        task = self.visible_task(user, task_id)
        expected_version = self.expect_version_outcome(task, mode)
        owner = self.user_ids[user]

        def update(item_id: int) -> Awaitable[Any]:
            return self.store.tasks.update_task(owner, item_id, changes, expected_version)

        if task is None:
            self.check_not_found(self.store.fails(lambda: update(task_id)), TaskNotFound, task_id, update)
            return
        if expected_version is not None and expected_version != task.version:
            error = self.store.fails(lambda: update(task_id))
            assert isinstance(error, VersionConflict)
            assert error.current == task.version
            return
        read = self.store.call(lambda: update(task_id))
        if "title" in changes:
            task.title = changes["title"].strip()
        if "description" in changes:
            task.description = changes["description"]
        if "priority" in changes:
            task.priority = changes["priority"]
        task.version += 1
        self.check_task(read, task_id, user)

    @rule(user=users, aim=aims, pick=picks, completed=st.booleans(), mode=version_modes)
    def set_completed(self, user: int, aim: str, pick: int, completed: bool, mode: str | None) -> None:
        task_id = self.pick_id(self.model_tasks, user, aim, pick)
        task = self.visible_task(user, task_id)
        expected_version = self.expect_version_outcome(task, mode)
        owner = self.user_ids[user]

        def complete(item_id: int) -> Awaitable[Any]:
            return self.store.tasks.set_completed(owner, item_id, completed, expected_version)

        if task is None:
            self.check_not_found(self.store.fails(lambda: complete(task_id)), TaskNotFound, task_id, complete)
            return
        if expected_version is not None and expected_version != task.version:
            error = self.store.fails(lambda: complete(task_id))
            assert isinstance(error, VersionConflict)
            assert error.current == task.version
            return
        read = self.store.call(lambda: complete(task_id))
        if task.completed != completed:
            task.completed = completed
            task.version += 1
        self.check_task(read, task_id, user)

    @rule(user=users, aim=aims, pick=picks, mode=version_modes)
    def soft_delete_task(self, user: int, aim: str, pick: int, mode: str | None) -> None:
        task_id = self.pick_id(self.model_tasks, user, aim, pick)
        task = self.visible_task(user, task_id)
        expected_version = self.expect_version_outcome(task, mode)
        owner = self.user_ids[user]

        def delete(item_id: int) -> Awaitable[Any]:
            return self.store.tasks.soft_delete_task(owner, item_id, expected_version)

        if task is None:
            self.check_not_found(self.store.fails(lambda: delete(task_id)), TaskNotFound, task_id, delete)
            return
        if expected_version is not None and expected_version != task.version:
            error = self.store.fails(lambda: delete(task_id))
            assert isinstance(error, VersionConflict)
            assert error.current == task.version
            return
        read = self.store.call(lambda: delete(task_id))
        task.deleted = True
        task.deleted_seq = self.tick()
        task.version += 1
        self.check_task(read, task_id, user)

    @rule(user=users, aim=st.sampled_from(["deleted", "deleted", "foreign-deleted", "any", "missing"]), pick=picks)
    def restore_task(self, user: int, aim: str, pick: int) -> None:
        if aim == "deleted":
            candidates = {task_id: task for task_id, task in self.model_tasks.items() if task.deleted}
            task_id = self.pick_id(candidates, user, "own", pick)
        elif aim == "foreign-deleted":
            candidates = {
                task_id: task for task_id, task in self.model_tasks.items() if task.deleted and task.owner != user
            }
            task_id = self.pick_id(candidates, user, "any", pick)
        else:
            task_id = self.pick_id(self.model_tasks, user, aim, pick)
        task = self.model_tasks.get(task_id)
        owner = self.user_ids[user]

        def restore(item_id: int) -> Awaitable[Any]:
            return self.store.tasks.restore_task(owner, item_id)

        if task is None or task.owner != user or not task.deleted:
            self.check_not_found(self.store.fails(lambda: restore(task_id)), TaskNotFound, task_id, restore)
            return
        read = self.store.call(lambda: restore(task_id))
        task.deleted = False
        task.version += 1
        self.check_task(read, task_id, user)

    @rule(user=users, limit=page_sizes)
    def list_deleted(self, user: int, limit: int) -> None:
        owner = self.user_ids[user]
        pages = self.all_pages(lambda cursor: self.store.tasks.list_deleted_tasks(owner, limit=limit, cursor=cursor), limit)
        listed = [task.id for page in pages for task in page]
        expected = self.expected_deleted(user)
        assert listed == expected
        assert len(pages) == max(1, -(-len(expected) // limit))
        for page in pages:
            for task in page:
                self.check_task(task, task.id, user)

    @rule(first=users, second=users)
    def foreign_task_cursors(self, first: int, second: int) -> None:
        """A cursor of one user's list, given to another user, shows only the other user's rows."""
        tasks = self.store.tasks
        first_id, second_id = self.user_ids[first], self.user_ids[second]
        active = self.store.call(lambda: tasks.get_active_tasks(first_id, limit=1))
        if active.next_cursor is not None:
            after = decode_id_cursor("t", active.next_cursor)
            page = self.store.call(lambda: tasks.get_active_tasks(second_id, limit=200, cursor=active.next_cursor))
            expected = [task_id for task_id in self.expected_active(second, "all", None, None) if task_id > after]
            assert [task.id for task in page.items] == expected
            self.store.counter.foreign_cursor_checks += 1
        trash = self.store.call(lambda: tasks.list_deleted_tasks(first_id, limit=1))
        if trash.next_cursor is not None:
            page = self.store.call(lambda: tasks.list_deleted_tasks(second_id, limit=200, cursor=trash.next_cursor))
            listed = [task.id for task in page.items]
            expected = self.expected_deleted(second)
            # The cursor only moves a position in the second user's list: a tail of it.
            assert listed == expected[len(expected) - len(listed):]
            self.store.counter.foreign_cursor_checks += 1

    # --- conversations ----------------------------------------------------------------------

    @rule(user=users, title=st.one_of(st.none(), titles))
    def create_conversation(self, user: int, title: str | None) -> None:
        read = self.store.call(lambda: self.store.conversations.create_conversation(self.user_ids[user], title))
        assert read.id not in self.model_conversations
        assert read.title == (title.strip() if title is not None else None)
        self.model_conversations[read.id] = ModelConversation(user, read.title, self.tick())

    @rule(user=users, limit=page_sizes)
    def list_conversations(self, user: int, limit: int) -> None:
        owner = self.user_ids[user]
        pages = self.all_pages(
            lambda cursor: self.store.conversations.list_conversations(owner, limit=limit, cursor=cursor), limit
        )
        listed = [conversation.id for page in pages for conversation in page]
        expected = self.expected_conversations(user)
        assert listed == expected
        assert len(pages) == max(1, -(-len(expected) // limit))
        for page in pages:
            for conversation in page:
                assert conversation.title == self.model_conversations[conversation.id].title

    @rule(
        user=users,
        aim=aims,
        pick=picks,
        role=st.sampled_from(["user", "assistant", "system", "tool"]),
        content=contents,
        key=message_keys,
    )
    def add_message(self, user: int, aim: str, pick: int, role: str, content: str, key: str | None) -> None:
        conversation_id = self.pick_id(self.model_conversations, user, aim, pick)
        conversation = self.visible_conversation(user, conversation_id)
        owner = self.user_ids[user]

        def add(item_id: int) -> Awaitable[Any]:
            return self.store.conversations.add_message(owner, item_id, role, content, key)

        if conversation is None:
            self.check_not_found(self.store.fails(lambda: add(conversation_id)), ConversationNotFound, conversation_id, add)
            return
        replayed = self.message_keys.get((user, key)) if key is not None else None
        if replayed is not None and replayed[0] != conversation_id:
            # A key first used in another conversation is rejected, and nothing moves.
            error = self.store.fails(lambda: add(conversation_id))
            assert isinstance(error, InvalidInput), error
            assert error.field == "idempotency_key"
            return
        read = self.store.call(lambda: add(conversation_id))
        if replayed is not None:
            # A retry returns the first message and leaves the conversation's order alone.
            first_conversation, first = replayed
            self.store.counter.replays += 1
            assert (read.id, read.conversation_id) == (first.id, first_conversation)
            assert (read.role, read.content) == (first.role, first.content)
            return
        conversation.touched_seq = self.tick()
        assert read.conversation_id == conversation_id
        assert all(read.id > message.id for message in conversation.messages)
        assert (read.role, read.content) == (role, content)
        message = ModelMessage(read.id, role, content)
        conversation.messages.append(message)
        if key is not None:
            self.message_keys[(user, key)] = (conversation_id, message)

    @rule(user=users, aim=aims, pick=picks, limit=page_sizes)
    def get_history(self, user: int, aim: str, pick: int, limit: int) -> None:
        conversation_id = self.pick_id(self.model_conversations, user, aim, pick)
        conversation = self.visible_conversation(user, conversation_id)
        owner = self.user_ids[user]
        history = self.store.conversations.get_history
        if conversation is None:
            error = self.store.fails(lambda: history(owner, conversation_id, limit))
            self.check_not_found(error, ConversationNotFound, conversation_id, lambda missing: history(owner, missing, limit))
            return
        pages = self.all_pages(lambda before: history(owner, conversation_id, limit, before), limit)
        # Pages run from the newest messages back, and each page is oldest first.
        messages = [message for page in reversed(pages) for message in page]
        assert [(m.id, m.role, m.content) for m in messages] == [
            (m.id, m.role, m.content) for m in conversation.messages
        ]
        assert all(message.conversation_id == conversation_id for message in messages)
        assert len(pages) == max(1, -(-len(conversation.messages) // limit))

    @rule(first=users, second=users, pick=picks)
    def foreign_history_cursor(self, first: int, second: int, pick: int) -> None:
        """A history cursor of one user's conversation, used on another's, reveals nothing of the first."""
        talks = self.store.conversations
        sources = sorted(
            conversation_id
            for conversation_id, conversation in self.model_conversations.items()
            if conversation.owner == first and not conversation.deleted and len(conversation.messages) >= 2
        )
        targets_of_second = sorted(
            conversation_id
            for conversation_id, conversation in self.model_conversations.items()
            if conversation.owner == second and not conversation.deleted
        )
        if sources and targets_of_second:
            source = sources[pick % len(sources)]
            page = self.store.call(lambda: talks.get_history(self.user_ids[first], source, 1))
            assert page.next_cursor is not None
            before = decode_id_cursor("m", page.next_cursor, "before")
            target = targets_of_second[pick % len(targets_of_second)]
            foreign = self.store.call(lambda: talks.get_history(self.user_ids[second], target, 200, page.next_cursor))
            expected = [message.id for message in self.model_conversations[target].messages if message.id < before][-200:]
            assert [message.id for message in foreign.items] == expected
            self.store.counter.foreign_cursor_checks += 1
        listing = self.store.call(lambda: talks.list_conversations(self.user_ids[first], limit=1))
        if listing.next_cursor is not None:
            foreign_page = self.store.call(
                lambda: talks.list_conversations(self.user_ids[second], limit=200, cursor=listing.next_cursor)
            )
            listed = [conversation.id for conversation in foreign_page.items]
            expected_list = self.expected_conversations(second)
            assert listed == expected_list[len(expected_list) - len(listed):]
            self.store.counter.foreign_cursor_checks += 1

    @rule(user=users, aim=aims, pick=picks)
    def soft_delete_conversation(self, user: int, aim: str, pick: int) -> None:
        conversation_id = self.pick_id(self.model_conversations, user, aim, pick)
        conversation = self.visible_conversation(user, conversation_id)
        owner = self.user_ids[user]

        def delete(item_id: int) -> Awaitable[Any]:
            return self.store.conversations.soft_delete_conversation(owner, item_id)

        if conversation is None:
            self.check_not_found(self.store.fails(lambda: delete(conversation_id)), ConversationNotFound, conversation_id, delete)
            return
        read = self.store.call(lambda: delete(conversation_id))
        assert read.id == conversation_id
        conversation.deleted = True

    @precondition(lambda self: bool(self.model_tasks))
    @rule(user=users)
    def counts_match(self, user: int) -> None:
        """The first page of 200 counts exactly the user's active tasks."""
        page = self.store.call(lambda: self.store.tasks.get_active_tasks(self.user_ids[user], limit=200))
        assert len(page.items) == len(self.expected_active(user, "all", None, None))


def fuzz_examples() -> int:
    raw = os.environ.get(EXAMPLES_ENV)
    return int(raw) if raw else DEFAULT_EXAMPLES


def test_users_see_only_own_rows(database_url: str, record_property: Callable[[str, object], None]) -> None:
    runner = Runner(database_url)
    IsolationMachine.runner = runner
    try:
        run_state_machine_as_test(
            IsolationMachine,
            settings=settings(
                max_examples=fuzz_examples(),
                stateful_step_count=STEPS_PER_EXAMPLE,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
            ),
        )
    finally:
        runner.close()
    counter = runner.counter
    record_property("fuzz_operations", counter.operations)
    print(
        f"\nisolation fuzz on {database_url.split(':')[0]}: {counter.operations} store operations, "
        f"{counter.not_found_checks} not-found comparisons, {counter.foreign_cursor_checks} foreign-cursor checks, {counter.replays} idempotent retries"
    )
    # A run that exercised nothing would pass vacuously.
    assert counter.operations >= fuzz_examples() * STEPS_PER_EXAMPLE
    assert counter.not_found_checks > 0
    assert counter.foreign_cursor_checks > 0
