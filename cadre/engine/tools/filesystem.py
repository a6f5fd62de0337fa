"""Reading, writing and listing files, confined to the workspace."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import anyio.to_thread

from cadre.engine.tools.base import FileNotFound, Tool, ToolContext, ToolFailed
from cadre.engine.tools.workspace import resolve_inside

MAX_FILE_BYTES = 1024 * 1024
MAX_ENTRIES = 1000
ENCODINGS = ["utf-8", "ascii", "latin-1", "utf-16"]
PATH = {"type": "string", "minLength": 1, "maxLength": 4096}


class FilesystemRead(Tool):
    name = "filesystem_read"
    description = "Read a text file from the workspace"
    category = "filesystem"
    parameters = {
        "type": "object",
        "properties": {"path": PATH, "encoding": {"enum": ENCODINGS, "default": "utf-8"}},
        "required": ["path"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        path = resolve_inside(ctx.workspace, args["path"])
        data = await anyio.to_thread.run_sync(_read_bytes, path, args["path"])
        try:
            content = data.decode(args.get("encoding", "utf-8"))
        except UnicodeDecodeError as exc:
            raise ToolFailed(
                f"'{args['path']}' is not valid {args.get('encoding', 'utf-8')} text."
            ) from exc
        return {"content": content, "size": len(data)}


def _read_bytes(path: Path, shown: str) -> bytes:
    if not path.exists():
        raise FileNotFound(f"No file '{shown}' in the workspace.")
    if path.is_dir():
        raise ToolFailed(f"'{shown}' is a directory.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ToolFailed(f"'{shown}' is larger than {MAX_FILE_BYTES} bytes.")
    return path.read_bytes()


class FilesystemWrite(Tool):
    name = "filesystem_write"
    description = "Write a text file in the workspace (replacing it if it exists)"
    category = "filesystem"
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
        path = resolve_inside(ctx.workspace, args["path"])
        data = args["content"].encode()
        await anyio.to_thread.run_sync(
            _write_atomically, path, data, args.get("create_dirs", True), args["path"]
        )
        return {"path": args["path"], "size": len(data)}


def _write_atomically(path: Path, data: bytes, create_dirs: bool, shown: str) -> None:
    if path.is_dir():
        raise ToolFailed(f"'{shown}' is a directory.")
    if not path.parent.exists():
        if not create_dirs:
            raise FileNotFound(f"The directory of '{shown}' does not exist.")
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".cadre-write-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # replace() swaps the directory entry: a link at ``path`` is replaced, never written through
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class FilesystemList(Tool):
    name = "filesystem_list"
    description = "List a directory of the workspace"
    category = "filesystem"
    parameters = {
        "type": "object",
        "properties": {"path": {**PATH, "default": "."}},
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        shown = args.get("path", ".")
        path = resolve_inside(ctx.workspace, shown)
        return await anyio.to_thread.run_sync(_list, path, shown)


def _list(path: Path, shown: str) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFound(f"No directory '{shown}' in the workspace.")
    if not path.is_dir():
        raise ToolFailed(f"'{shown}' is not a directory.")
    entries = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if len(entries) == MAX_ENTRIES:
            return {"path": shown, "entries": entries, "truncated": True}
        if entry.is_symlink():
            kind, size = "symlink", 0
        elif entry.is_dir(follow_symlinks=False):
            kind, size = "directory", 0
        else:
            kind, size = "file", entry.stat(follow_symlinks=False).st_size
        entries.append({"name": entry.name, "type": kind, "size": size})
    return {"path": shown, "entries": entries}
