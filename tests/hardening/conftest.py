"""Fixtures of the hardening tests."""

from __future__ import annotations

import pytest

from server.app import TaskstoreServer, build_server
from server.identity import Identity
from server.services import Services
from server.tools import ToolContext
from store import ConversationRepository, Database, TaskRepository, database_config


@pytest.fixture
def mcp_server(database: Database, database_url: str) -> TaskstoreServer:
    """A server on the session's database, the same wiring as the server tests use."""
    services = Services(database, TaskRepository(database), ConversationRepository(database), database_config(database_url))
    return build_server(ToolContext(identity=Identity(), services=services))
