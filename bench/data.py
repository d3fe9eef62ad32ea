"""The benchmark data set: generated once with COPY, reused while its marker matches the profile.

PostgreSQL gets a database of its own (``taskstore_bench``, ``taskstore_bench_quick``, ...),
migrated with Alembic, and a login role ``<database>_app`` that owns nothing. The product
connects as that role, so row-level security applies as in a deployment. The floors and the
loader connect as ``postgres``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from bench.profiles import Profile
from store import create_engine, database_config
from store import migrate

MARKER_TABLE = "bench_dataset"
CHAT_USER = "bench-chat"
WRITER_PREFIX = "bench-writer-"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

TASK_COLUMNS = (
    "id", "user_id", "title", "description", "completed", "completed_at", "priority", "due_at",
    "version", "created_at", "updated_at", "deleted_at", "idempotency_key",
)
MESSAGE_COLUMNS = ("id", "conversation_id", "user_id", "role", "content", "created_at", "idempotency_key")
CONVERSATION_COLUMNS = ("id", "user_id", "title", "created_at", "updated_at", "deleted_at")
CHUNK = 50_000
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_WORDS = (
    "call send review draft plan buy book fix write check update clean pay renew order move "
    "prepare email invoice report slides garden car dentist meeting budget backup release notes"
).split()


def user_name(index: int) -> str:
    return f"bench-user-{index:05d}"


def growth_user(size: int) -> str:
    return f"bench-growth-{size}"


@dataclass
class Dataset:
    """Location of the data set and the ids the workloads use."""

    profile: Profile
    admin_url: URL  # as postgres, for the floors and the loader
    app_url: URL  # as the application role, for the product
    users: list[str]
    growth_users: dict[int, str]
    conversations: dict[int, int]  # message count -> conversation id, all of CHAT_USER
    generated_seconds: float | None = None  # None: reused
    reused_generation_seconds: float | None = None  # how long the reused data set took to generate
    sqlite_path: Path | None = None
    sqlite_generated_seconds: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def admin_dsn(self) -> str:
        return asyncpg_dsn(self.admin_url)

    @property
    def app_dsn(self) -> str:
        return asyncpg_dsn(self.app_url)

    @property
    def app_url_text(self) -> str:
        return self.app_url.render_as_string(hide_password=False)


def asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def check_loopback(url: URL) -> None:
    """Exit unless ``url`` names a PostgreSQL on this machine, the only one the harness may load."""
    if (url.host or "localhost") not in LOOPBACK_HOSTS:
        raise SystemExit(f"refusing to benchmark {url.host!r}: only a PostgreSQL on 127.0.0.1 is allowed")


def app_role(database: str) -> str:
    return f"{database}_app"


async def ensure_postgres(profile: Profile, server_url: str, *, database: str | None = None, rebuild: bool = False) -> Dataset:
    """Create, migrate and fill the benchmark database unless a matching one exists."""
    base = make_url(server_url)
    check_loopback(base)
    name = database or profile.database
    maintenance = base.set(database="postgres")
    admin_url = base.set(database=name)
    role = app_role(name)

    connection = await asyncpg.connect(asyncpg_dsn(maintenance))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and rebuild:
            await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = False
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
        if not await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await connection.execute(f'CREATE ROLE "{role}" LOGIN')
    finally:
        await connection.close()

    engine = create_engine(database_config(admin_url.render_as_string(hide_password=False)), pool_size=1, max_overflow=0)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()

    spec = json.dumps(profile.spec(), sort_keys=True)
    generated: float | None = None
    reused_from: float | None = None
    connection = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await connection.execute(f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (spec text NOT NULL, created_at timestamptz NOT NULL)")
        await connection.execute(f"ALTER TABLE {MARKER_TABLE} ADD COLUMN IF NOT EXISTS seconds double precision")
        marker = await connection.fetchrow(f"SELECT spec, seconds FROM {MARKER_TABLE} LIMIT 1")
        if marker is None or marker["spec"] != spec:
            started = time.perf_counter()
            await _fill_postgres(connection, profile)
            generated = time.perf_counter() - started
            await connection.execute(f"DELETE FROM {MARKER_TABLE}")
            await connection.execute(f"INSERT INTO {MARKER_TABLE} VALUES ($1, now(), $2)", spec, generated)
        else:
            reused_from = marker["seconds"]
        # Rows a write workload left behind if an earlier run was interrupted.
        await connection.execute("DELETE FROM task WHERE user_id LIKE $1", WRITER_PREFIX + "%")
        await connection.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
        await connection.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    finally:
        await connection.close()

    return Dataset(
        profile=profile,
        admin_url=admin_url,
        app_url=admin_url.set(username=role, password=None),
        users=[user_name(index) for index in range(profile.users)],
        growth_users={size: growth_user(size) for size in profile.growth_sizes},
        conversations={size: index + 1 for index, size in enumerate(profile.conversation_sizes)},
        generated_seconds=generated,
        reused_generation_seconds=reused_from,
    )


async def drop_postgres(server_url: str, database: str) -> None:
    """Drop a benchmark database and its application role (the smoke test's cleanup)."""
    maintenance = make_url(server_url).set(database="postgres")
    check_loopback(maintenance)
    connection = await asyncpg.connect(asyncpg_dsn(maintenance))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await connection.execute(f'DROP ROLE IF EXISTS "{app_role(database)}"')
    finally:
        await connection.close()


def _task_owners(profile: Profile, users: int) -> list[str]:
    owners: list[str] = []
    for index in range(users):
        owners.extend([user_name(index)] * profile.tasks_per_user)
    for size in profile.growth_sizes:
        owners.extend([growth_user(size)] * size)
    # Interleaved as if many users had added tasks over time: one user's rows sit on many pages.
    random.Random(7).shuffle(owners)
    return owners


def _task_records(owners: list[str], start: int, stop: int, rng: random.Random) -> Iterator[tuple[object, ...]]:
    for index in range(start, stop):
        task_id = index + 1
        created = BASE_TIME + timedelta(seconds=task_id)
        draw = rng.random()
        completed = draw < 0.3
        deleted = created + timedelta(days=2) if 0.3 <= draw < 0.35 else None
        words = _WORDS[task_id % len(_WORDS)], _WORDS[(task_id * 7) % len(_WORDS)]
        shape = task_id % 10
        if shape < 2:
            description = None
        elif shape < 9:
            description = f"{words[0]} {words[1]} " * 8
        else:
            description = f"{words[1]} {words[0]} " * 30  # longer than a list's 200 characters
        yield (
            task_id,
            owners[index],
            f"{words[0].capitalize()} {words[1]} #{task_id}",
            description,
            completed,
            created + timedelta(hours=3) if completed else None,
            (None, "low", "medium", "high")[task_id % 4],
            created + timedelta(days=7) if task_id % 2 else None,
            1 + task_id % 3,
            created,
            created + timedelta(hours=1),
            deleted,
            None,
        )


async def _fill_postgres(connection: asyncpg.Connection, profile: Profile) -> None:
    await connection.execute("TRUNCATE task, message, conversation RESTART IDENTITY")
    owners = _task_owners(profile, profile.users)
    rng = random.Random(11)
    for start in range(0, len(owners), CHUNK):
        records = list(_task_records(owners, start, min(start + CHUNK, len(owners)), rng))
        await connection.copy_records_to_table("task", records=records, columns=TASK_COLUMNS)

    conversations = [
        (index + 1, CHAT_USER, f"Chat of {size} messages", BASE_TIME, BASE_TIME, None)
        for index, size in enumerate(profile.conversation_sizes)
    ]
    await connection.copy_records_to_table("conversation", records=conversations, columns=CONVERSATION_COLUMNS)
    message_owners: list[int] = []
    for index, size in enumerate(profile.conversation_sizes):
        message_owners.extend([index + 1] * size)
    random.Random(13).shuffle(message_owners)
    for start in range(0, len(message_owners), CHUNK):
        records = list(_message_records(message_owners, start, min(start + CHUNK, len(message_owners))))
        await connection.copy_records_to_table("message", records=records, columns=MESSAGE_COLUMNS)

    for table in ("task", "conversation", "message"):
        await connection.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )
    await connection.execute("VACUUM (ANALYZE) task, conversation, message")


def _message_records(owners: list[int], start: int, stop: int) -> Iterator[tuple[object, ...]]:
    for index in range(start, stop):
        message_id = index + 1
        words = _WORDS[message_id % len(_WORDS)], _WORDS[(message_id * 5) % len(_WORDS)]
        yield (
            message_id,
            owners[index],
            CHAT_USER,
            "user" if message_id % 2 else "assistant",
            f"{words[0]} the {words[1]} please; " * (2 + message_id % 12),
            BASE_TIME + timedelta(seconds=message_id),
            None,
        )


# --- SQLite ------------------------------------------------------------------------------------


async def ensure_sqlite(
    profile: Profile, directory: Path, name: str, *, rebuild: bool = False
) -> tuple[Path, float | None]:
    """Create or reuse a SQLite file with ``profile.sqlite_users`` users and the growth users."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.sqlite"
    spec = json.dumps({**profile.spec(), "users": profile.sqlite_users}, sort_keys=True)
    if rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    if path.exists():
        with sqlite3.connect(path) as connection:
            try:
                stored = connection.execute(f"SELECT spec FROM {MARKER_TABLE}").fetchone()
            except sqlite3.OperationalError:
                stored = None
        if stored and stored[0] == spec:
            return path, None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    started = time.perf_counter()
    engine = create_engine(database_config(f"sqlite:///{path}"))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    owners = _task_owners(profile, profile.sqlite_users)
    rng = random.Random(11)
    connection = sqlite3.connect(path)
    try:
        placeholders = ", ".join("?" * len(TASK_COLUMNS))
        for start in range(0, len(owners), CHUNK):
            rows = [_sqlite_row(row) for row in _task_records(owners, start, min(start + CHUNK, len(owners)), rng)]
            connection.executemany(f"INSERT INTO task ({', '.join(TASK_COLUMNS)}) VALUES ({placeholders})", rows)
        connection.execute(f"CREATE TABLE {MARKER_TABLE} (spec TEXT NOT NULL)")
        connection.execute(f"INSERT INTO {MARKER_TABLE} VALUES (?)", (spec,))
        connection.commit()
        connection.execute("ANALYZE")
    finally:
        connection.close()
    return path, time.perf_counter() - started


def _sqlite_row(row: tuple[object, ...]) -> tuple[object, ...]:
    # The store writes UTC datetimes to SQLite as offset-free text (store.types.UTCDateTime).
    return tuple(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value for value in row)
