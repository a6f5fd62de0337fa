"""Seed tool names and permission modes over Cadre's tools."""

from __future__ import annotations

import pytest

from cadre.engine.tools.permissions import (
    DECISIONS,
    SEED_TOOL_NAMES,
    canonical_tool,
    decide,
)
from cadre.engine.tools.registry import TOOLS
from cadre.errors import ValidationFailed

KINDS = {
    "calculator": "read",
    "filesystem_edit": "edit",
    "filesystem_glob": "read",
    "filesystem_grep": "read",
    "filesystem_list": "read",
    "filesystem_read": "read",
    "filesystem_write": "edit",
    "python_ast_parser": "read",
    "shell": "execute",
}


def test_every_tool_has_its_kind() -> None:
    assert {name: tool.kind for name, tool in TOOLS.items()} == KINDS


def test_every_seed_name_names_a_registered_tool() -> None:
    assert set(SEED_TOOL_NAMES.values()) <= set(TOOLS)


@pytest.mark.parametrize(("seed", "cadre"), SEED_TOOL_NAMES.items())
def test_canonical_tool_maps_seed_names(seed: str, cadre: str) -> None:
    assert canonical_tool(seed) == cadre


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_canonical_tool_keeps_cadre_names(name: str) -> None:
    assert canonical_tool(name) == name


@pytest.mark.parametrize("name", ["Teleport", "bash", "read", ""])
def test_canonical_tool_refuses_unknown_names_naming_them(name: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        canonical_tool(name)
    assert f"'{name}'" in raised.value.message
    assert raised.value.status == 422


@pytest.mark.parametrize(
    ("mode", "read", "edit", "execute"),
    [
        ("bypassPermissions", "allow", "allow", "allow"),
        ("acceptEdits", "allow", "allow", "ask"),
        ("default", "allow", "ask", "ask"),
        ("plan", "allow", "deny", "deny"),
    ],
)
def test_decide_by_mode_and_kind(mode: str, read: str, edit: str, execute: str) -> None:
    expected = {"read": read, "edit": edit, "execute": execute}
    for name, kind in KINDS.items():
        assert decide(name, mode) == expected[kind], (name, mode)
    assert decide("Read", mode) == read
    assert decide("Grep", mode) == read
    assert decide("Edit", mode) == edit
    assert decide("Write", mode) == edit
    assert decide("Bash", mode) == execute


def test_the_table_covers_the_seed_modes() -> None:
    assert set(DECISIONS) == {"bypassPermissions", "acceptEdits", "default", "plan"}


def test_decide_refuses_unknown_modes_and_tools() -> None:
    with pytest.raises(ValidationFailed, match="permission mode 'yolo'"):
        decide("Read", "yolo")
    with pytest.raises(ValidationFailed, match="'Teleport'"):
        decide("Teleport", "default")
