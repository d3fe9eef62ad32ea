"""What a client learns from tools/list: titles, descriptions, hints and schemas of every tool."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp_types import Tool

from server.app import build_server
from server.tools import ToolContext

# tool: (read_only, destructive, idempotent); None where the hint does not apply to a read-only tool.
EXPECTED_HINTS: dict[str, tuple[bool, bool | None, bool | None]] = {
    "create_task": (False, False, False),
    "create_tasks": (False, False, False),
    "list_tasks": (True, None, None),
    "get_task": (True, None, None),
    "update_task": (False, True, True),
    "complete_task": (False, False, True),
    "complete_tasks": (False, False, True),
    "delete_task": (False, True, True),
    "restore_task": (False, False, True),
    "list_deleted_tasks": (True, None, None),
    "create_conversation": (False, False, False),
    "list_conversations": (True, None, None),
    "add_message": (False, False, False),
    "get_history": (True, None, None),
    "delete_conversation": (False, True, True),
}
# A parameter with one of these names would let a caller pick whose data to touch.
USER_LIKE_NAMES = {"user", "userid", "owner", "ownerid", "uid", "sub", "subject", "account", "accountid",
                   "principal", "tenant", "tenantid", "username", "email", "actor", "actorid"}


@pytest.fixture(scope="module")
async def tools() -> dict[str, Tool]:
    # No database: listing tools never touches the store.
    server = build_server(ToolContext())
    async with Client(server) as client:
        listed = await client.list_tools()
    return {tool.name: tool for tool in listed.tools}


def properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (name, schema) of the input's parameters, including the fields of nested objects."""
    found = list(schema.get("properties", {}).items())
    for definition in schema.get("$defs", {}).values():
        found += list(definition.get("properties", {}).items())
    return found


def test_server_lists_exactly_the_expected_tools(tools):
    assert set(tools) == set(EXPECTED_HINTS)


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_tool_has_a_title(tools, name):
    assert tools[name].title


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_tool_has_a_description(tools, name):
    assert len(tools[name].description or "") >= 20


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_tool_description_has_no_source_indentation(tools, name):
    indented = [line for line in (tools[name].description or "").splitlines() if line.startswith(" ")]
    assert indented == []


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_every_parameter_has_a_description(tools, name):
    undescribed = [param for param, schema in properties(tools[name].input_schema) if not schema.get("description")]
    assert undescribed == []


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_tool_sets_the_read_only_hint(tools, name):
    annotations = tools[name].annotations
    assert annotations is not None
    assert annotations.read_only_hint is EXPECTED_HINTS[name][0]


@pytest.mark.parametrize("name", [name for name, hints in EXPECTED_HINTS.items() if not hints[0]])
def test_write_tool_sets_the_destructive_hint(tools, name):
    assert tools[name].annotations.destructive_hint is EXPECTED_HINTS[name][1]


@pytest.mark.parametrize("name", [name for name, hints in EXPECTED_HINTS.items() if not hints[0]])
def test_write_tool_sets_the_idempotent_hint(tools, name):
    assert tools[name].annotations.idempotent_hint is EXPECTED_HINTS[name][2]


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_tool_is_not_open_world(tools, name):
    assert tools[name].annotations.open_world_hint is False


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_tool_has_an_object_output_schema(tools, name):
    schema = tools[name].output_schema
    assert schema is not None
    assert schema.get("type") == "object"
    assert schema.get("properties")


@pytest.mark.parametrize("name", EXPECTED_HINTS)
def test_tool_has_no_user_id_parameter(tools, name):
    names = [param for param, _ in properties(tools[name].input_schema)]
    user_like = [param for param in names if param.lower().replace("_", "").replace("-", "") in USER_LIKE_NAMES]
    assert user_like == []
