"""Reading, writing and listing files, confined to the workspace.

Every path goes through ``resolve_inside``; that check and the file I/O run in
a worker thread, so a large file or a slow disk does not stall the event loop.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from cadre.engine.tools.base import FileNotFound, PathLimits, Tool, ToolContext, ToolFailed
from cadre.engine.tools.workspace import (
    quota_refusal,
    resolve_inside,
    workspace_relative,
    workspace_size,
)

MAX_FILE_BYTES = 1024 * 1024
MAX_ENTRIES = 1000
ENCODINGS = ["utf-8", "ascii", "latin-1", "utf-16"]
PATH = {"type": "string", "minLength": 1, "maxLength": 4096}

_T = TypeVar("_T")

# One lock per workspace: measuring and writing happen together, so two concurrent
# writes cannot both fit under the quota the one leaves for the other. Weak values: a
# sandbox copy's lock goes when its last write does, so the map does not grow per run.
_WORKSPACE_LOCKS: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
_LOCKS_GUARD = threading.Lock()


def _workspace_lock(workspace: Path) -> threading.Lock:
    key = os.path.realpath(workspace)
    with _LOCKS_GUARD:
        return _WORKSPACE_LOCKS.setdefault(key, threading.Lock())


class FilesystemRead(Tool):
    name = "filesystem_read"
    description = "Read a text file (at most 1 MiB) from the workspace"
    category = "filesystem"
    kind = "read"
    parameters = {
        "type": "object",
        "properties": {
            "path": PATH,
            "encoding": {"type": "string", "enum": ENCODINGS, "default": "utf-8"},
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        shown, encoding = args["path"], args.get("encoding", "utf-8")
        data = await _in_thread(_read_bytes, ctx.workspace, shown, ctx.path_limits)
        try:
            content = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ToolFailed(f"'{shown}' is not {encoding} text.") from exc
        return {"content": content, "size": len(data)}


def _read_bytes(workspace: Path, shown: str, limits: PathLimits) -> bytes:
    path = resolve_inside(workspace, shown, limits)
    if not path.exists():
        raise FileNotFound(f"No file '{shown}' in the workspace.")
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise ToolFailed(f"'{shown}' is a directory.")
    if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
        raise ToolFailed(f"'{shown}' is not a regular file.")
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows meanwhile
    if len(data) > MAX_FILE_BYTES:
        raise ToolFailed(f"'{shown}' is larger than {MAX_FILE_BYTES} bytes (1 MiB).")
    return data


class FilesystemWrite(Tool):
    name = "filesystem_write"
    description = "Write a UTF-8 text file in the workspace, replacing it if it exists"
    category = "filesystem"
    kind = "edit"
    writes = True
    parameters = {
        "type": "object",
        "properties": {
            "path": PATH,
            "content": {"type": "string", "maxLength": MAX_FILE_BYTES},
            "create_dirs": {"type": "boolean", "default": True},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        data = args["content"].encode()
        if len(data) > MAX_FILE_BYTES:  # maxLength counts characters, not bytes
            raise ToolFailed(f"The content is larger than {MAX_FILE_BYTES} bytes (1 MiB).")
        create_dirs = args.get("create_dirs", True)
        path = await _in_thread(
            _write_atomically,
            ctx.workspace,
            args["path"],
            data,
            create_dirs,
            ctx.path_limits,
            ctx.quota_bytes,
        )
        return {"path": path, "size": len(data)}


def _write_atomically(
    workspace: Path,
    shown: str,
    data: bytes,
    create_dirs: bool,
    limits: PathLimits,
    quota_bytes: int | None = None,
) -> str:
    """Write a temporary file beside the target and rename it over: readers never see half.

    With ``quota_bytes``, a write that would take the workspace's total size over
    it is refused; replacing a file counts only the difference. Returns the path
    written, relative to the workspace.
    """
    path = resolve_inside(workspace, shown, limits)
    if path.is_dir():
        raise ToolFailed(f"'{shown}' is a directory.")
    if quota_bytes is None:
        return _write_checked(workspace, path, shown, data, create_dirs)
    with _workspace_lock(workspace):
        _check_quota(workspace, path, shown, len(data), quota_bytes)
        return _write_checked(workspace, path, shown, data, create_dirs)


def _check_quota(workspace: Path, path: Path, shown: str, size: int, quota_bytes: int) -> None:
    """Refuse writing ``size`` bytes at ``path`` if that takes the workspace over its quota.

    Call with the workspace's lock held, and write before releasing it.
    """
    replaced = path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    # Only whether the total passes the quota matters: stop measuring once it does.
    used = workspace_size(workspace, stop_above=quota_bytes + replaced)
    if used - replaced + size > quota_bytes:
        raise quota_refusal(
            quota_bytes,
            f"Writing {size} bytes to '{shown}' would take the workspace over its quota.",
        )


def _write_checked(
    workspace: Path, path: Path, shown: str, data: bytes, create_dirs: bool, mode: int = 0o644
) -> str:
    if not path.parent.is_dir():
        if path.parent.exists():
            raise ToolFailed(f"The parent of '{shown}' is not a directory.")
        if not create_dirs:
            raise FileNotFound(f"The directory of '{shown}' does not exist.")
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".cadre-write-")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # mkstemp makes 0600; a written file is ordinary
            handle.write(data)
        # replace() swaps the directory entry: a link at ``path`` is replaced, never written through
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return workspace_relative(workspace, path)


class FilesystemEdit(Tool):
    name = "filesystem_edit"
    description = (
        "Replace old_string with new_string in a UTF-8 text file of the workspace; old_string "
        "must occur exactly once unless replace_all is true"
    )
    category = "filesystem"
    kind = "edit"
    writes = True
    parameters = {
        "type": "object",
        "properties": {
            "path": PATH,
            "old_string": {"type": "string", "minLength": 1, "maxLength": MAX_FILE_BYTES},
            "new_string": {"type": "string", "maxLength": MAX_FILE_BYTES},
            "replace_all": {"type": "boolean", "default": False},
        },
        "required": ["path", "old_string", "new_string"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        if args["old_string"] == args["new_string"]:
            raise ToolFailed("old_string and new_string are the same: nothing to edit.")
        return await _in_thread(
            _edit,
            ctx.workspace,
            args["path"],
            (args["old_string"], args["new_string"], args.get("replace_all", False)),
            ctx.path_limits,
            ctx.quota_bytes,
        )


def _edit(
    workspace: Path,
    shown: str,
    change: tuple[str, str, bool],
    limits: PathLimits,
    quota_bytes: int | None,
) -> dict[str, Any]:
    """Read, replace and write back under the workspace's lock: two edits never interleave."""
    old, new, replace_all = change
    with _workspace_lock(workspace):
        data = _read_bytes(workspace, shown, limits)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolFailed(f"'{shown}' is not UTF-8 text.") from exc
        found = text.count(old)
        if found == 0:
            raise ToolFailed(f"old_string does not occur in '{shown}'.")
        if found > 1 and not replace_all:
            raise ToolFailed(
                f"old_string occurs {found} times in '{shown}': give more context to make it "
                "unique, or set replace_all."
            )
        edited = text.replace(old, new).encode()
        if len(edited) > MAX_FILE_BYTES:
            raise ToolFailed(f"The edited file would be over {MAX_FILE_BYTES} bytes (1 MiB).")
        path = resolve_inside(workspace, shown, limits)
        if quota_bytes is not None:
            _check_quota(workspace, path, shown, len(edited), quota_bytes)
        mode = stat.S_IMODE(path.stat().st_mode)  # an edited script stays executable
        written = _write_checked(workspace, path, shown, edited, False, mode)
    return {"path": written, "replacements": found}


class FilesystemList(Tool):
    name = "filesystem_list"
    description = "List a directory of the workspace (at most 1000 entries)"
    category = "filesystem"
    kind = "read"
    parameters = {
        "type": "object",
        "properties": {"path": {**PATH, "default": "."}},
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return await _in_thread(_list, ctx.workspace, args.get("path", "."), ctx.path_limits)


def _list(workspace: Path, shown: str, limits: PathLimits) -> dict[str, Any]:
    path = resolve_inside(workspace, shown, limits)
    if not path.exists():
        raise FileNotFound(f"No directory '{shown}' in the workspace.")
    if not path.is_dir():
        raise ToolFailed(f"'{shown}' is not a directory.")
    with os.scandir(path) as scan:
        found = sorted(scan, key=lambda e: e.name)
    listing = {
        "path": workspace_relative(workspace, path),
        "entries": [_entry(entry) for entry in found[:MAX_ENTRIES]],
    }
    if len(found) > MAX_ENTRIES:
        listing["truncated"] = True
    return listing


def _entry(entry: os.DirEntry[str]) -> dict[str, Any]:
    """One listing row; links are reported as links, never followed."""
    if entry.is_symlink():
        return {"name": entry.name, "type": "symlink", "size": 0}
    if entry.is_dir(follow_symlinks=False):
        return {"name": entry.name, "type": "directory", "size": 0}
    return {"name": entry.name, "type": "file", "size": entry.stat(follow_symlinks=False).st_size}


async def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    """Run blocking file work in a worker thread; OS errors become a readable tool error."""
    try:
        return await anyio.to_thread.run_sync(function, *args)
    except OSError as exc:
        raise ToolFailed(f"The file system refused: {exc.strerror or exc}.") from exc
