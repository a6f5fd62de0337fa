"""Finding files by name (filesystem_glob) and lines by regular expression (filesystem_grep).

Both start from a path checked by ``resolve_inside``, walk without following symlinks,
and stop after a bounded number of entries. Glob matching runs in a worker thread:
each name is matched against one pattern segment by ``fnmatch``, which cannot backtrack
exponentially. Grep runs in a child process (``grep_worker``) with CPU time, memory and
wall time limited: Python's ``re`` has no timeout and a pattern such as ``(a+)+$`` can
backtrack for ever; the third-party ``regex`` module (which has one) is not a dependency,
and a child process also keeps the reading of up to ``GREP_MAX_TOTAL_BYTES`` off the server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cadre.engine.tools import grep_worker
from cadre.engine.tools.base import (
    FileNotFound,
    PathLimits,
    PathOutsideWorkspace,
    Tool,
    ToolContext,
    ToolFailed,
)
from cadre.engine.tools.filesystem import PATH, _in_thread
from cadre.engine.tools.grep_worker import display_path, match_parts
from cadre.engine.tools.isolated import run_worker
from cadre.engine.tools.workspace import resolve_inside

MAX_PATTERN_CHARS = 1024
GLOB_MAX_MATCHES = 1000
GLOB_MAX_ENTRIES = 20_000  # entries a glob visits at most
GREP_MAX_MATCHES = 1000
GREP_MAX_ENTRIES = 20_000
GREP_MAX_FILE_BYTES = 1024 * 1024  # larger files are skipped
GREP_MAX_TOTAL_BYTES = 32 * 1024 * 1024  # read by one search at most
GREP_MAX_LINE_CHARS = 1000  # a matching line is cut after this many characters
GREP_WORKERS = 2  # searches running at once per server process; the rest wait
GREP_MEMORY_BYTES = 512 * 1024 * 1024
GREP_CPU_SECONDS = 5
GREP_WALL_SECONDS = 15

WORKER = Path(grep_worker.__file__)
PATTERN = {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_CHARS}


class FilesystemGlob(Tool):
    name = "filesystem_glob"
    description = (
        "Find workspace paths matching a glob pattern (*, ?, [abc], ** for any number of "
        f"directories), under path if given; at most {GLOB_MAX_MATCHES}, sorted"
    )
    category = "filesystem"
    kind = "read"
    parameters = {
        "type": "object",
        "properties": {"pattern": PATTERN, "path": {**PATH, "default": "."}},
        "required": ["pattern"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        segments = _segments(args["pattern"])
        return await _in_thread(
            _glob, ctx.workspace, args.get("path", "."), segments, ctx.path_limits
        )


def _segments(pattern: str) -> list[str]:
    """The pattern's segments; 403 for a pattern that would climb out of the workspace."""
    if "\x00" in pattern or os.path.isabs(pattern) or pattern.startswith("~"):
        raise PathOutsideWorkspace(f"The pattern '{pattern}' is not relative to the workspace.")
    segments = [s for s in pattern.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise PathOutsideWorkspace(f"The pattern '{pattern}' may not contain '..'.")
    if not segments:
        raise ToolFailed(f"The pattern '{pattern}' matches no file name.")
    return segments


def _glob(workspace: Path, shown: str, segments: list[str], limits: PathLimits) -> dict[str, Any]:
    base = resolve_inside(workspace, shown, limits)
    if not base.is_dir():
        raise FileNotFound(f"No directory '{shown}' in the workspace.")
    root = os.path.realpath(workspace)
    deep = "**" in segments
    matches: list[str] = []
    seen, truncated = 0, False
    pending: list[tuple[str, list[str]]] = [(os.fspath(base), [])]
    while pending and not truncated:
        directory, parts = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        subdirectories = []
        for entry in entries:
            seen += 1
            if seen > GLOB_MAX_ENTRIES or len(matches) == GLOB_MAX_MATCHES:
                truncated = True
                break
            named = [*parts, entry.name]
            if match_parts(named, segments):
                matches.append(display_path(entry.path, root))
            # symlinks are matched by name but never followed
            if entry.is_dir(follow_symlinks=False) and (deep or len(named) < len(segments)):
                subdirectories.append((entry.path, named))
        pending.extend(reversed(subdirectories))
    return {"matches": sorted(matches), "truncated": truncated}


class FilesystemGrep(Tool):
    name = "filesystem_grep"
    description = (
        "Search workspace text files for lines matching a regular expression (Python syntax), "
        "under path (a directory or a file), optionally only files whose name matches glob; "
        f"files over {GREP_MAX_FILE_BYTES // 1024} KiB and binary files are skipped"
    )
    category = "filesystem"
    kind = "read"
    parameters = {
        "type": "object",
        "properties": {
            "pattern": PATTERN,
            "path": {**PATH, "default": "."},
            "glob": PATTERN,
            "case_insensitive": {"type": "boolean", "default": False},
            "max_matches": {
                "type": "integer",
                "minimum": 1,
                "maximum": GREP_MAX_MATCHES,
                "default": 100,
            },
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        shown = args.get("path", ".")
        start = await _in_thread(_existing, ctx.workspace, shown, ctx.path_limits)
        request = {
            "root": os.path.realpath(ctx.workspace),
            "start": os.fspath(start),
            "pattern": args["pattern"],
            "case_insensitive": args.get("case_insensitive", False),
            "glob": args.get("glob"),
            "max_matches": args.get("max_matches", 100),
            "max_entries": GREP_MAX_ENTRIES,
            "max_file_bytes": GREP_MAX_FILE_BYTES,
            "max_total_bytes": GREP_MAX_TOTAL_BYTES,
            "max_line_chars": GREP_MAX_LINE_CHARS,
        }
        reply = await _search_isolated(request)
        if "error" in reply:
            raise ToolFailed(reply["error"])
        return reply


def _existing(workspace: Path, shown: str, limits: PathLimits) -> Path:
    path = resolve_inside(workspace, shown, limits)
    if not path.exists():
        raise FileNotFound(f"Nothing named '{shown}' in the workspace.")
    return path


async def _search_isolated(request: dict[str, Any]) -> dict[str, Any]:
    reply = await run_worker(
        WORKER,
        json.dumps(request).encode(),
        memory_bytes=GREP_MEMORY_BYTES,
        cpu_seconds=GREP_CPU_SECONDS,
        wall_seconds=GREP_WALL_SECONDS,
        workers=GREP_WORKERS,
    )
    if reply is None:
        raise ToolFailed(
            f"The search did not finish within its limits ({GREP_CPU_SECONDS} s of CPU, "
            f"{GREP_WALL_SECONDS} s in all): the pattern may backtrack catastrophically "
            "(nested repetition such as (a+)+); simplify it or narrow path and glob."
        )
    return reply
