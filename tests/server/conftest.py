"""Fixtures of the server tests: a TaskstoreServer wired to the session's database."""

from __future__ import annotations

import pytest

from server.app import TaskstoreServer, build_server
from server.identity import Identity
from server.services import Services
from store import ConversationRepository, Database, TaskRepository


@pytest.fixture
def mcp_server(database: Database, database_url: str) -> TaskstoreServer:
    from server.tools import ToolContext
    from store import database_config

    services = Services(database, TaskRepository(database), ConversationRepository(database), database_config(database_url))
    return build_server(ToolContext(identity=Identity(), services=services))
