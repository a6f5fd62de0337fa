"""Per-user workspaces, throw-away sandbox copies, and the one confinement check."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread

from cadre.engine.tools.base import (
    DEFAULT_PATH_LIMITS,
    PathLimits,
    PathOutsideWorkspace,
    PathTooLong,
    WorkspaceQuotaExceeded,
)

# How many entries a size walk visits at most: measuring must stay cheap on every write.
MAX_WALK_ENTRIES = 100_000

# The id becomes a directory name: nothing that could be a separator, "..", or too long.
_SIMPLE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@functools.lru_cache(maxsize=4096)
def workspace_path(data_dir: Path, user_id: str) -> Path:
    """``data_dir/workspaces/<user_id>``, without creating it. Remembered: every run asks
    for its owner's, and pathlib builds one in some 60 Python calls."""
    if not _SIMPLE_ID.fullmatch(user_id):
        raise ValueError(f"not a simple user id: {user_id!r}")
    return Path(data_dir) / "workspaces" / user_id


def user_workspace(data_dir: Path, user_id: str) -> Path:
    """``data_dir/workspaces/<user_id>``, created if needed."""
    path = workspace_path(data_dir, user_id)
    if not path.is_dir():  # one stat per run: ``mkdir(exist_ok=True)`` raises, then checks
        Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(parents=True, exist_ok=True)
    return path


def workspace_size(workspace: Path, stop_above: int | None = None) -> int:
    """The bytes the regular files under ``workspace`` hold, by ``lstat``.

    Symlinks are neither followed nor counted, so a link to something large
    (inside or out) costs nothing. The walk stops as soon as the total passes
    ``stop_above`` (the caller only needs to know it is over), and refuses with
    ``WorkspaceQuotaExceeded`` after ``MAX_WALK_ENTRIES`` entries.
    """
    total, seen = 0, 0
    pending = [os.fspath(workspace)]
    while pending:
        try:
            scan = os.scandir(pending.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed meanwhile
        with scan:
            for entry in scan:
                seen += 1
                if seen > MAX_WALK_ENTRIES:
                    raise WorkspaceQuotaExceeded(
                        f"The workspace holds more than {MAX_WALK_ENTRIES} entries; "
                        "remove some before writing.",
                        details={"workspace": f"more than {MAX_WALK_ENTRIES} entries"},
                    )
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
                if stop_above is not None and total > stop_above:
                    return total
    return total


def quota_refusal(quota_bytes: int, message: str) -> WorkspaceQuotaExceeded:
    """The error for a workspace over ``quota_bytes``, naming the quota."""
    return WorkspaceQuotaExceeded(
        f"{message} The workspace quota is {_megabytes(quota_bytes)} "
        f"({quota_bytes} bytes, CADRE_WORKSPACE_QUOTA_MB).",
        details={"workspace": f"over the quota of {quota_bytes} bytes"},
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


@contextlib.asynccontextmanager
async def sandbox_copy(workspace: Path, quota_bytes: int | None = None) -> AsyncIterator[Path]:
    """A copy of ``workspace`` that is removed afterwards, even on error or cancellation.

    Symlinks are copied as links, never followed: a link that pointed outside
    still points outside (and stays refused), and an absolute link into the
    original workspace now lies outside the copy, so the original is never touched.
    A workspace already over ``quota_bytes`` is refused before anything is copied.
    """
    if quota_bytes is not None:
        used = await anyio.to_thread.run_sync(workspace_size, workspace, quota_bytes)
        if used > quota_bytes:
            raise quota_refusal(
                quota_bytes, "The workspace is already over its quota: no sandbox copy is made."
            )
    root = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "cadre-sandbox-"))
    copy = root / "workspace"
    try:
        await anyio.to_thread.run_sync(lambda: shutil.copytree(workspace, copy, symlinks=True))
        yield copy
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(root, ignore_errors=True))


def resolve_inside(
    workspace: Path, relative: str, limits: PathLimits = DEFAULT_PATH_LIMITS
) -> Path:
    """The path ``relative`` names inside ``workspace``; 403 for anything that leaves it.

    Absolute paths, NUL bytes, ``..`` that climbs out, and symlinks (at any
    component, the last included) whose target lies outside are refused, never
    followed. Paths longer than ``limits.max_length`` characters, or more than
    ``limits.max_depth`` levels deep once normalised, are refused with 422 before
    anything touches the disk. The returned path lies under the workspace's real path.
    """
    if len(relative) > limits.max_length:
        raise PathTooLong(
            f"Workspace paths may be at most {limits.max_length} characters long.",
            details={"path": f"longer than {limits.max_length} characters"},
        )
    if "\x00" in relative:
        raise PathOutsideWorkspace("Paths may not contain NUL bytes.")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise PathOutsideWorkspace(f"'{relative}' is not relative to the workspace.")
    root = Path(os.path.realpath(workspace))
    candidate = Path(os.path.normpath(root / relative))
    if not _within(candidate, root):
        raise PathOutsideWorkspace(f"'{relative}' is outside the workspace.")
    parts = candidate.relative_to(root).parts
    if len(parts) > limits.max_depth:
        raise PathTooLong(
            f"Workspace paths may be at most {limits.max_depth} levels deep.",
            details={"path": f"deeper than {limits.max_depth} levels"},
        )
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink() and not _within(Path(os.path.realpath(current)), root):
            raise PathOutsideWorkspace(f"'{relative}' leads outside the workspace.")
    return candidate


def workspace_relative(workspace: Path, path: Path) -> str:
    """How a path from ``resolve_inside`` is shown back to the caller: normalised, POSIX."""
    return path.relative_to(os.path.realpath(workspace)).as_posix()


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
