"""Fixtures shared by every test: databases on both backends, built with Alembic.

PostgreSQL cases need ``TEST_DATABASE_URL`` (a server URL whose user may create databases);
each test session creates databases of its own there and drops them at the end.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from store import ConversationRepository, Database, TaskRepository, create_engine, database_config
from store import migrate

TEST_DATABASE_URL_ENV = "TEST_DATABASE_URL"
# CI sets this so a missing PostgreSQL fails the run instead of skipping half of it.
REQUIRE_POSTGRES_ENV = "TASKSTORE_REQUIRE_POSTGRES"
BACKENDS = ["sqlite", "postgres"]


def postgres_admin_url() -> str:
    url = os.environ.get(TEST_DATABASE_URL_ENV)
    if not url:
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {TEST_DATABASE_URL_ENV} is not set")
        pytest.skip(f"PostgreSQL cases need {TEST_DATABASE_URL_ENV}, for example postgresql://postgres@127.0.0.1:5432/test")
    return url


class PostgresDatabases:
    """Creates uniquely named databases next to TEST_DATABASE_URL's and drops them on close."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    async def create(self, prefix: str = "taskstore_test") -> str:
        import asyncpg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(self._asyncpg_dsn(self.admin_url))
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        import asyncpg

        if not self.created:
            return
        connection = await asyncpg.connect(self._asyncpg_dsn(self.admin_url))
        try:
            for name in self.created:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        self.created.clear()

    @staticmethod
    def _asyncpg_dsn(url: str) -> str:
        return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(postgres_admin_url())
    yield databases
    # A sync fixture, so async fixtures can request it; the drop runs on a loop of its own.
    worker = threading.Thread(target=asyncio.run, args=(databases.drop_all(),))
    worker.start()
    worker.join()


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite")


async def make_database_url(backend: str, sqlite_dir: Path, request: pytest.FixtureRequest) -> str:
    """Return the URL of a new, empty database on ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{sqlite_dir / f'{uuid.uuid4().hex[:12]}.db'}"
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return await databases.create()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        postgres_admin_url()
    return request.param


async def make_migrated_database_url(backend: str, sqlite_dir: Path, request: pytest.FixtureRequest) -> str:
    """Return the URL of a new database on ``backend``, migrated to head with Alembic."""
    url = await make_database_url(backend, sqlite_dir, request)
    engine = create_engine(database_config(url))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="session")
async def database_url(backend: str, sqlite_dir: Path, request: pytest.FixtureRequest) -> str:
    """A database per backend for the whole session, migrated to head with Alembic."""
    return await make_migrated_database_url(backend, sqlite_dir, request)


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(create_engine(database_config(database_url)))
    yield db
    await db.dispose()


@pytest.fixture
def tasks(database: Database) -> TaskRepository:
    return TaskRepository(database)


@pytest.fixture
def conversations(database: Database) -> ConversationRepository:
    return ConversationRepository(database)


@pytest.fixture
def user_ids() -> Iterator[tuple[str, str]]:
    """Two fresh user ids, so tests sharing a database never see each other's rows."""
    suffix = uuid.uuid4().hex[:10]
    yield f"user-a-{suffix}", f"user-b-{suffix}"
