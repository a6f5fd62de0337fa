"""The seed's tool names and permission modes, mapped onto Cadre's tools.

A permission mode weighs a tool by its ``kind``: ``read`` tools only look,
``edit`` tools change files, ``execute`` tools run commands.

==================  ======  ======  =======
mode                read    edit    execute
==================  ======  ======  =======
bypassPermissions   allow   allow   allow
acceptEdits         allow   allow   ask
default             allow   ask     ask
plan                allow   deny    deny
==================  ======  ======  =======
"""

from __future__ import annotations

from typing import Literal

from cadre.engine.tools.base import Kind
from cadre.engine.tools.registry import TOOLS
from cadre.errors import ValidationFailed

Decision = Literal["allow", "ask", "deny"]
PermissionMode = Literal["bypassPermissions", "acceptEdits", "default", "plan"]

SEED_TOOL_NAMES = {
    "Read": "filesystem_read",
    "Write": "filesystem_write",
    "Edit": "filesystem_edit",
    "Glob": "filesystem_glob",
    "Grep": "filesystem_grep",
    "Bash": "shell",
}

DECISIONS: dict[str, dict[Kind, Decision]] = {
    "bypassPermissions": {"read": "allow", "edit": "allow", "execute": "allow"},
    "acceptEdits": {"read": "allow", "edit": "allow", "execute": "ask"},
    "default": {"read": "allow", "edit": "ask", "execute": "ask"},
    "plan": {"read": "allow", "edit": "deny", "execute": "deny"},
}


def canonical_tool(name: str) -> str:
    """Cadre's name for a seed name (``Bash``) or a Cadre name (``shell``); 422 otherwise."""
    canonical = SEED_TOOL_NAMES.get(name, name)
    if canonical not in TOOLS:
        raise ValidationFailed(
            f"Unknown tool '{name}'.", details={"tool": f"'{name}' is not a known tool"}
        )
    return canonical


def decide(tool_name: str, permission_mode: str) -> Decision:
    """Whether ``permission_mode`` lets the tool run, asks first, or refuses it."""
    decisions = DECISIONS.get(permission_mode)
    if decisions is None:
        raise ValidationFailed(
            f"Unknown permission mode '{permission_mode}'.",
            details={"permission_mode": f"one of {', '.join(DECISIONS)}"},
        )
    return decisions[TOOLS[canonical_tool(tool_name)].kind]
