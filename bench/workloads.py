"""The workloads W1 to W5, each next to the floor it is compared with, measured in the same run."""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import data
from bench.data import CHAT_USER, WRITER_PREFIX, Dataset
from bench.measure import Result, Run, concurrent, sequential
from bench.procs import Server, http_client, start_noop, start_taskstore, wait_healthy
from server.app import build_server
from server.auth.dev_issuer import DevIssuer
from server.services import Services
from server.tools import ToolContext
from store import ConversationRepository, Database, TaskRepository, create_engine, database_config
from store.cursor import encode_cursor

LIST_ARGS = {"limit": 20}  # list_tasks' defaults otherwise: status pending, first page
LIST_FILTERS = {"status": "pending"}
HISTORY_LIMIT = 50
SET_USER_SQL = "SELECT set_config('taskstore.user_id', $1, true)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Bench:
    """State of one harness run and everything it measured."""

    dataset: Dataset
    data_dir: Path
    results: dict[str, Result] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(2026))

    @property
    def profile(self):  # type: ignore[no-untyped-def]
        return self.dataset.profile

    def record(self, name: str, runs: list[Run], concurrency: int) -> Result:
        result = Result.of(name, runs, concurrency)
        self.results[name] = result
        log(f"  {name}: p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms, {result.throughput:,.0f} calls/s")
        return result

    def random_user(self) -> str:
        return self.rng.choice(self.dataset.users)

    async def seq(self, call: Callable[[int], Awaitable[object]], probe: Server | None = None) -> Run:
        warm_until = time.perf_counter() + 1.0
        for index in range(min(50, self.profile.sequential_calls)):
            await call(index)
            if time.perf_counter() > warm_until:
                break
        cpu = probe.cpu() if probe else 0.0
        run = await sequential(call, self.profile.sequential_calls, self.profile.seconds_per_run)
        return replace(run, server_cpu=probe.cpu() - cpu) if probe else run

    async def conc(self, workers: list[Callable[[int], Awaitable[object]]], probe: Server | None = None) -> Run:
        for worker in workers:
            await worker(0)
        cpu = probe.cpu() if probe else 0.0
        run = await concurrent(workers, self.profile.concurrent_calls, self.profile.seconds_per_run)
        return replace(run, server_cpu=probe.cpu() - cpu) if probe else run


# --- helpers ------------------------------------------------------------------------------------


@dataclass
class Captured:
    statement: str
    parameters: tuple[Any, ...]


async def capture(engine: AsyncEngine, action: Callable[[], Awaitable[object]], marker: str) -> Captured:
    """Return the first SQL statement containing ``marker`` that ``action`` sends, with its parameters."""
    seen: list[Captured] = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(Captured(statement, tuple(parameters)))

    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        await action()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    for item in seen:
        if marker in item.statement:
            return item
    raise RuntimeError(f"no statement containing {marker!r} among {[item.statement[:60] for item in seen]}")


def substitute(captured: Captured, replacements: dict[Any, Any]) -> Callable[..., tuple[Any, ...]]:
    """Map the captured parameters to positions, so a floor can send the same statement with new values."""
    positions = {key: [i for i, value in enumerate(captured.parameters) if value == key] for key in replacements}

    def build(**values: Any) -> tuple[Any, ...]:
        parameters = list(captured.parameters)
        for key, name in replacements.items():
            for index in positions[key]:
                parameters[index] = values[name]
        return tuple(parameters)

    return build


def check(result: Any) -> Any:
    if result.is_error:
        raise RuntimeError(f"tool call failed: {result.content}")
    return result


@asynccontextmanager
async def in_process_client(server: Any, user_id: str) -> AsyncIterator[Client]:
    token = AccessToken(
        token="bench", client_id="bench", scopes=["tasks:read", "tasks:write"],
        expires_at=int(time.time()) + 3600, subject=user_id,
    )
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        async with Client(server) as client:
            yield client
    finally:
        auth_context_var.reset(reset)


def token_for(bench: Bench, user: str) -> str:
    return DevIssuer.load_or_create(bench.data_dir).issue(user, 4 * 3600)


# --- the run ------------------------------------------------------------------------------------


async def run_all(bench: Bench) -> None:
    profile = bench.profile
    dataset = bench.dataset
    DevIssuer.load_or_create(bench.data_dir)
    # MCPServer configures INFO logging in this process too; the harness prints its own progress.
    logging.getLogger().setLevel(logging.WARNING)

    log("starting servers")
    servers = {
        "stateful": start_taskstore("taskstore-stateful", bench.data_dir, dataset.app_url_text),
        "stateless": start_taskstore("taskstore-stateless-a", bench.data_dir, dataset.app_url_text, "--stateless", "--json-response"),
        "stateless_b": start_taskstore("taskstore-stateless-b", bench.data_dir, dataset.app_url_text, "--stateless", "--json-response"),
        "noop_stateful": start_noop("noop-stateful", bench.data_dir),
        "noop_stateless": start_noop("noop-stateless", bench.data_dir, "--stateless", "--json-response"),
    }
    try:
        wait_healthy(list(servers.values()))
        bench.facts["rss_at_rest"] = servers["stateful"].rss()
        engine = create_engine(database_config(dataset.app_url_text), pool_size=profile.sessions, max_overflow=0)
        database = Database(engine)
        pool = await asyncpg.create_pool(dataset.admin_dsn, min_size=profile.sessions, max_size=profile.sessions)
        app_pool = await asyncpg.create_pool(dataset.app_dsn, min_size=1, max_size=2)
        try:
            await w1_in_process(bench, database, pool, app_pool)
            await w3_growth(bench, database, pool)
            await w1_http(bench, servers)
            await w2_create(bench, database, pool, servers["stateful"])
            await w5_replicas(bench, servers["stateless"], servers["stateless_b"])
        finally:
            await pool.close()
            await app_pool.close()
            await database.dispose()
            cleanup = await asyncpg.connect(dataset.admin_dsn)
            try:
                await cleanup.execute("DELETE FROM task WHERE user_id LIKE $1", WRITER_PREFIX + "%")
            finally:
                await cleanup.close()
    finally:
        for server in servers.values():
            server.stop()
    if dataset.sqlite_path is not None:
        await sqlite_workloads(bench, dataset.sqlite_path)


# --- W1: one page of a random user's tasks, layer by layer --------------------------------------


async def w1_in_process(bench: Bench, database: Database, pool: asyncpg.Pool, app_pool: asyncpg.Pool) -> None:
    log("W1 list one page: raw asyncpg, store, in-process tool")
    tasks = TaskRepository(database)
    sample_user = bench.dataset.users[0]
    captured = await capture(
        database.engine, lambda: tasks.get_active_tasks(sample_user, LIST_FILTERS, limit=20), "FROM task"
    )
    list_sql = captured.statement
    list_params = substitute(captured, {sample_user: "user"})
    bench.facts["list_sql"] = list_sql

    # The floors must return what the store returns.
    raw_rows = await pool.fetch(list_sql, *list_params(user=sample_user))
    page = await tasks.get_active_tasks(sample_user, LIST_FILTERS, limit=20)
    if [row["id"] for row in raw_rows][:20] != [task.id for task in page.items]:
        raise RuntimeError("the raw floor and the store return different rows")

    async def raw(_: int) -> object:
        return await pool.fetch(list_sql, *list_params(user=bench.random_user()))

    async def raw_transaction(_: int) -> object:
        user = bench.random_user()
        async with app_pool.acquire() as connection, connection.transaction():
            await connection.execute(SET_USER_SQL, user)
            return await connection.fetch(list_sql, *list_params(user=user))

    async def store(_: int) -> object:
        return await tasks.get_active_tasks(bench.random_user(), LIST_FILTERS, limit=20)

    services = Services(database, tasks, ConversationRepository(database), database_config(bench.dataset.app_url_text))
    server = build_server(ToolContext(services=services))
    logging.getLogger().setLevel(logging.WARNING)

    runs: dict[str, list[Run]] = {key: [] for key in ("raw", "raw_tx", "store", "tool", "tool_lean", "raw16", "store16")}
    for _ in range(bench.profile.repeats):
        runs["raw"].append(await bench.seq(raw))
        runs["raw_tx"].append(await bench.seq(raw_transaction))
        runs["store"].append(await bench.seq(store))
        async with in_process_client(server, bench.random_user()) as client:
            runs["tool"].append(await bench.seq(_caller(client, "list_tasks", LIST_ARGS)))
        async with in_process_client(server, bench.random_user()) as client:
            runs["tool_lean"].append(await bench.seq(_caller(client, "list_tasks", LIST_ARGS, validate=False)))
        sessions = bench.profile.sessions
        runs["raw16"].append(await bench.conc([raw] * sessions))
        runs["store16"].append(await bench.conc([store] * sessions))
    bench.record("W1 list: raw asyncpg (one statement)", runs["raw"], 1)
    bench.record("W1 list: raw asyncpg in the store's transaction", runs["raw_tx"], 1)
    bench.record("W1 list: store get_active_tasks", runs["store"], 1)
    bench.record("W1 list: tool via in-process client", runs["tool"], 1)
    bench.record("W1 list: tool via in-process client without output validation", runs["tool_lean"], 1)
    bench.record(f"W1 list: raw asyncpg, {bench.profile.sessions} tasks", runs["raw16"], bench.profile.sessions)
    bench.record(f"W1 list: store, {bench.profile.sessions} tasks", runs["store16"], bench.profile.sessions)


async def w1_http(bench: Bench, servers: dict[str, Server]) -> None:
    profile = bench.profile
    sessions = profile.sessions
    log(f"W1 list over streamable HTTP, 1 and {sessions} sessions, against the no-op tool")
    variants = [
        ("list_tasks, stateful", servers["stateful"], "list_tasks", LIST_ARGS),
        ("list_tasks, stateless JSON", servers["stateless"], "list_tasks", LIST_ARGS),
        ("no-op tool, stateful", servers["noop_stateful"], "noop", {}),
        ("no-op tool, stateless JSON", servers["noop_stateless"], "noop", {}),
        ("fixed 20-task page without database, stateless JSON", servers["noop_stateless"], "page_of_tasks", {}),
    ]
    # (sessions, validate): the SDK client checks every result against the tool's output
    # schema; the load generator without that check leaves the CPU to the server.
    shapes = [(1, True), (sessions, True), (sessions, False)]
    runs: dict[tuple[str, int, bool], list[Run]] = {}
    stateful = servers["stateful"]
    stateful.start_sampling()
    for _ in range(profile.repeats):
        for label, server, tool, arguments in variants:
            for count, validate in shapes:
                async with AsyncExitStack() as stack:
                    clients = [
                        await stack.enter_async_context(http_client(server.url, token_for(bench, bench.random_user())))
                        for _ in range(count)
                    ]
                    workers = [_caller(client, tool, arguments, validate) for client in clients]
                    run = await (bench.seq(workers[0], server) if count == 1 else bench.conc(workers, server))
                runs.setdefault((label, count, validate), []).append(run)
    bench.facts["rss_under_load"] = stateful.stop_sampling()
    for label, _, _, _ in variants:
        for count, validate in shapes:
            bench.record(http_name(label, count, validate), runs[(label, count, validate)], count)


def http_name(label: str, count: int, validate: bool = True) -> str:
    unit = "session" if count == 1 else "sessions"
    client = "" if validate else ", client without output validation"
    return f"W1 HTTP {label}, {count} {unit}{client}"


def skip_output_validation(client: Client, tool: str) -> None:
    """Make this SDK client session take ``tool``'s results without checking them against its output schema.

    The SDK has no switch for it; a listed tool whose cached schema is None is not checked.
    """
    session = client.session
    schemas = getattr(session, "_tool_output_schemas", None)
    if schemas is None:
        raise RuntimeError("this mcp version keeps no _tool_output_schemas; update bench.workloads.skip_output_validation")
    schemas[tool] = None
    getattr(session, "_tool_output_validators", {}).pop(tool, None)


def _caller(client: Client, tool: str, arguments: dict[str, Any], validate: bool = True) -> Callable[[int], Awaitable[object]]:
    async def call(_: int) -> object:
        result = check(await client.call_tool(tool, arguments))
        if not validate:
            skip_output_validation(client, tool)
        return result

    return call


# --- W2: create_task ----------------------------------------------------------------------------


async def w2_create(bench: Bench, database: Database, pool: asyncpg.Pool, server: Server) -> None:
    profile = bench.profile
    sessions = profile.sessions
    log(f"W2 create_task: store vs raw insert, and {sessions} HTTP sessions vs {sessions} raw inserters")
    tasks = TaskRepository(database)
    writer = WRITER_PREFIX + "0"
    captured = await capture(database.engine, lambda: tasks.create_task(writer, {"title": "captured title"}), "INSERT INTO task")
    insert_sql = captured.statement
    moment = next(value for value in captured.parameters if isinstance(value, datetime))
    params = substitute(captured, {writer: "user", "captured title": "title", moment: "now"})
    counter = iter(range(10**9))

    def writer_of(index: int) -> str:
        return f"{WRITER_PREFIX}{index % sessions}"

    async def raw(index: int) -> object:
        number = next(counter)
        return await pool.fetchrow(insert_sql, *params(user=writer_of(number), title=f"Bench task {number}", now=datetime.now(UTC)))

    async def store(index: int) -> object:
        number = next(counter)
        return await tasks.create_task(writer_of(number), {"title": f"Bench task {number}"})

    runs: dict[str, list[Run]] = {key: [] for key in ("raw", "store", "raw16", "http16")}
    server.start_sampling()
    for _ in range(profile.repeats):
        runs["raw"].append(await bench.seq(raw))
        runs["store"].append(await bench.seq(store))
        runs["raw16"].append(await bench.conc([raw] * sessions))
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(http_client(server.url, token_for(bench, writer_of(index))))
                for index in range(sessions)
            ]

            def creator(client: Client) -> Callable[[int], Awaitable[object]]:
                async def call(_: int) -> object:
                    return check(await client.call_tool("create_task", {"title": f"Bench task {next(counter)}"}))

                return call

            runs["http16"].append(await bench.conc([creator(client) for client in clients]))
    bench.facts["rss_under_write_load"] = server.stop_sampling()
    bench.record("W2 insert: raw asyncpg (one statement)", runs["raw"], 1)
    bench.record("W2 insert: store create_task", runs["store"], 1)
    bench.record(f"W2 insert: raw asyncpg, {sessions} tasks", runs["raw16"], sessions)
    bench.record(f"W2 create_task over HTTP, {sessions} sessions", runs["http16"], sessions)
    connection = await pool.acquire()
    try:
        await connection.execute("DELETE FROM task WHERE user_id LIKE $1", WRITER_PREFIX + "%")
    finally:
        await pool.release(connection)


# --- W3: growth ---------------------------------------------------------------------------------


async def w3_growth(bench: Bench, database: Database, pool: asyncpg.Pool) -> None:
    profile = bench.profile
    log("W3 growth: list_tasks and get_history by size, deep pages")
    tasks = TaskRepository(database)
    conversations = ConversationRepository(database)
    largest = max(profile.growth_sizes)
    big_user = bench.dataset.growth_users[largest]

    # The deep page: the last full page of the largest user's pending tasks.
    pending = await pool.fetchval(
        "SELECT count(*) FROM task WHERE user_id = $1 AND deleted_at IS NULL AND completed = false", big_user
    )
    after_id = await pool.fetchval(
        "SELECT id FROM task WHERE user_id = $1 AND deleted_at IS NULL AND completed = false ORDER BY id OFFSET $2 LIMIT 1",
        big_user, max(0, pending - 25),
    )
    deep_cursor = encode_cursor("t", after_id)
    first = await capture(database.engine, lambda: tasks.get_active_tasks(big_user, LIST_FILTERS, limit=20), "FROM task")
    deep = await capture(
        database.engine, lambda: tasks.get_active_tasks(big_user, LIST_FILTERS, limit=20, cursor=deep_cursor), "FROM task"
    )
    first_params = substitute(first, {big_user: "user"})

    largest_chat = max(profile.conversation_sizes)
    chat_id = bench.dataset.conversations[largest_chat]
    oldest = await pool.fetchval(
        "SELECT id FROM message WHERE conversation_id = $1 ORDER BY id OFFSET $2 LIMIT 1", chat_id, min(60, largest_chat - 1)
    )
    deep_before = encode_cursor("m", oldest)
    history = await capture(
        database.engine, lambda: conversations.get_history(CHAT_USER, chat_id, limit=HISTORY_LIMIT), "FROM message"
    )
    history_params = substitute(history, {chat_id: "conversation"})

    runs: dict[str, list[Run]] = {}

    def add(name: str, run: Run) -> None:
        runs.setdefault(name, []).append(run)

    for _ in range(profile.repeats):
        for size in profile.growth_sizes:
            user = bench.dataset.growth_users[size]
            add(f"W3 list_tasks first page, {size:,} tasks: store",
                await bench.seq(lambda _, user=user: tasks.get_active_tasks(user, LIST_FILTERS, limit=20)))
            add(f"W3 list_tasks first page, {size:,} tasks: raw asyncpg",
                await bench.seq(lambda _, user=user: pool.fetch(first.statement, *first_params(user=user))))
        add(f"W3 list_tasks deep page, {largest:,} tasks: store",
            await bench.seq(lambda _: tasks.get_active_tasks(big_user, LIST_FILTERS, limit=20, cursor=deep_cursor)))
        add(f"W3 list_tasks deep page, {largest:,} tasks: raw asyncpg",
            await bench.seq(lambda _: pool.fetch(deep.statement, *deep.parameters)))
        for size in profile.conversation_sizes:
            conversation = bench.dataset.conversations[size]
            add(f"W3 get_history(limit=50), {size:,} messages: store",
                await bench.seq(lambda _, c=conversation: conversations.get_history(CHAT_USER, c, limit=HISTORY_LIMIT)))
            add(f"W3 get_history(limit=50), {size:,} messages: raw asyncpg",
                await bench.seq(lambda _, c=conversation: pool.fetch(history.statement, *history_params(conversation=c))))
        add(f"W3 get_history deep page, {largest_chat:,} messages: store",
            await bench.seq(lambda _: conversations.get_history(CHAT_USER, chat_id, limit=HISTORY_LIMIT, before=deep_before)))
    for name, name_runs in runs.items():
        bench.record(name, name_runs, 1)


# --- W5: two stateless replicas -----------------------------------------------------------------


async def w5_replicas(bench: Bench, first: Server, second: Server) -> None:
    profile = bench.profile
    sessions = profile.sessions
    log("W5 scale-out: one stateless replica vs two behind round robin")
    users = bench.dataset.users[: profile.replica_check_users] + [bench.dataset.growth_users[min(profile.growth_sizes)]]
    mismatches = 0
    pages = 0
    for user in users:
        token = token_for(bench, user)
        async with http_client(first.url, token) as one, http_client(first.url, token, [first.port, second.port]) as two:
            for status in ("pending", "all"):
                cursor: str | None = None
                for _ in range(1000):  # bounded walk; a user has at most a few hundred pages here
                    arguments: dict[str, Any] = {"status": status, "limit": 20}
                    if cursor is not None:
                        arguments["cursor"] = cursor
                    single = check(await one.call_tool("list_tasks", arguments)).structured_content
                    spread = check(await two.call_tool("list_tasks", arguments)).structured_content
                    pages += 1
                    mismatches += single != spread
                    cursor = single.get("next_cursor")
                    if not cursor:
                        break
    bench.facts["replica_pages_compared"] = pages
    bench.facts["replica_mismatches"] = mismatches

    runs: dict[str, list[Run]] = {"one": [], "two": []}
    for _ in range(profile.repeats):
        for key, ports in (("one", None), ("two", [first.port, second.port])):
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(http_client(first.url, token_for(bench, bench.random_user()), ports))
                    for _ in range(sessions)
                ]
                workers = [_caller(client, "list_tasks", LIST_ARGS, validate=False) for client in clients]
                runs[key].append(await bench.conc(workers))
    bench.record(f"W5 list_tasks, 1 stateless replica, {sessions} sessions", runs["one"], sessions)
    bench.record(f"W5 list_tasks, 2 stateless replicas (round robin), {sessions} sessions", runs["two"], sessions)


# --- SQLite ---------------------------------------------------------------------------------------


async def sqlite_workloads(bench: Bench, path: Path) -> None:
    profile = bench.profile
    log("SQLite: W1 list and W3 list growth, store vs the same SQL on aiosqlite")
    engine = create_engine(database_config(f"sqlite:///{path}"))
    database = Database(engine)
    tasks = TaskRepository(database)
    users = [data.user_name(index) for index in range(profile.sqlite_users)]
    rng = random.Random(5)
    try:
        captured = await capture(engine, lambda: tasks.get_active_tasks(users[0], LIST_FILTERS, limit=20), "FROM task")
        params = substitute(captured, {users[0]: "user"})
        async with aiosqlite.connect(path) as connection:
            async def raw_user(user: str) -> object:
                async with connection.execute(captured.statement, params(user=user)) as cursor:
                    return await cursor.fetchall()

            runs: dict[str, list[Run]] = {}

            def add(name: str, run: Run) -> None:
                runs.setdefault(name, []).append(run)

            for _ in range(profile.repeats):
                add("SQLite W1 list: raw aiosqlite", await bench.seq(lambda _: raw_user(rng.choice(users))))
                add("SQLite W1 list: store get_active_tasks",
                    await bench.seq(lambda _: tasks.get_active_tasks(rng.choice(users), LIST_FILTERS, limit=20)))
                for size in profile.growth_sizes:
                    user = bench.dataset.growth_users[size]
                    add(f"SQLite W3 list_tasks first page, {size:,} tasks: store",
                        await bench.seq(lambda _, user=user: tasks.get_active_tasks(user, LIST_FILTERS, limit=20)))
            for name, name_runs in runs.items():
                bench.record(name, name_runs, 1)
    finally:
        await database.dispose()
