"""Per-user workspaces, throw-away sandbox copies, and the one confinement check."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread

from cadre.engine.tools.base import PathOutsideWorkspace

_SIMPLE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def user_workspace(data_dir: Path, user_id: str) -> Path:
    if not _SIMPLE_ID.match(user_id):
        raise ValueError(f"not a simple user id: {user_id!r}")
    path = Path(data_dir) / "workspaces" / user_id
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.asynccontextmanager
async def sandbox_copy(workspace: Path) -> AsyncIterator[Path]:
    """A copy of ``workspace`` (links copied as links) that is removed afterwards."""
    root = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "cadre-sandbox-"))
    copy = root / "workspace"
    try:
        await anyio.to_thread.run_sync(lambda: shutil.copytree(workspace, copy, symlinks=True))
        yield copy
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(root, ignore_errors=True))


def resolve_inside(workspace: Path, relative: str) -> Path:
    """The path ``relative`` names inside ``workspace``; 403 for anything that leaves it.

    Absolute paths, NUL bytes, ``..`` that climbs out, and symlinks (at any
    component) whose target lies outside are refused, never followed.
    """
    if "\x00" in relative:
        raise PathOutsideWorkspace("Paths may not contain NUL bytes.")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise PathOutsideWorkspace(
            f"'{relative}' is absolute; paths are relative to the workspace."
        )
    root = Path(os.path.realpath(workspace))
    candidate = Path(os.path.normpath(root / relative))
    if candidate != root and root not in candidate.parents:
        raise PathOutsideWorkspace(f"'{relative}' is outside the workspace.")
    # Walk the components: a link anywhere must land inside the workspace.
    current = root
    for part in candidate.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            target = Path(os.path.realpath(current))
            if target != root and root not in target.parents:
                raise PathOutsideWorkspace(f"'{relative}' leads outside the workspace.")
    return candidate
