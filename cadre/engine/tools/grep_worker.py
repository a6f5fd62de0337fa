"""filesystem_grep's search, in a child process of its own: stdlib only.

Run as ``python -I -S grep_worker.py MEMORY_BYTES CPU_SECONDS``: it limits its own
address space and CPU time, reads one JSON request on stdin and writes one JSON object
on stdout: ``{"matches": [...], "truncated": bool}`` or ``{"error": "..."}``. Python's
``re`` can backtrack for ever on a hostile pattern; here that costs this process its
CPU limit, never the server's event loop. ``match_parts`` (glob matching) is shared with
filesystem_glob, which imports it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import resource
import stat
import sys
from collections.abc import Iterator
from typing import Any


def match_parts(parts: list[str], segments: list[str]) -> bool:
    """Whether path ``parts`` match glob ``segments``, ``**`` standing for any number of them.

    Linear in ``len(parts) * len(segments)``; each part against one segment goes through
    ``fnmatch``, whose translation does not backtrack exponentially.
    """
    states = {0}  # how many parts the segments so far can have consumed
    for segment in segments:
        if segment == "**":
            states = set(range(min(states), len(parts) + 1))
        else:
            states = {
                i + 1 for i in states if i < len(parts) and fnmatch.fnmatchcase(parts[i], segment)
            }
        if not states:
            return False
    return len(parts) in states


def display_path(path: str, root: str) -> str:
    """``path`` relative to ``root``, as text a JSON reply can carry: bytes of a name that
    are not UTF-8 (held as surrogates by ``os.fsdecode``) become U+FFFD."""
    relative = os.path.relpath(path, root)
    return relative.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def walk(start: str, max_entries: int) -> Iterator[tuple[str, os.stat_result] | None]:
    """Regular files under ``start`` in name order, ``None`` once ``max_entries`` were visited.

    Symlinks are never followed, nor reported: a link cannot lead the walk outside.
    """
    seen = 0
    pending = [start]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            continue
        subdirectories = []
        for entry in entries:
            seen += 1
            if seen > max_entries:
                yield None
                return
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                subdirectories.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                yield entry.path, info
        pending.extend(reversed(subdirectories))  # popped in name order


def search(request: dict[str, Any]) -> dict[str, Any]:
    try:
        flags = re.IGNORECASE if request["case_insensitive"] else 0
        pattern = re.compile(request["pattern"], flags)
    except re.error as exc:
        return {"error": f"The pattern is not a valid regular expression: {exc}."}
    root, start = request["root"], request["start"]
    glob = request["glob"]
    segments = glob.split("/") if glob and "/" in glob else None
    matches: list[dict[str, Any]] = []
    scanned, truncated = 0, False
    if os.path.isdir(start):
        files: Iterator[tuple[str, os.stat_result] | None] = walk(start, request["max_entries"])
    else:
        files = iter([(start, os.stat(start))])
    for found in files:
        if found is None:
            truncated = True
            break
        path, info = found
        if glob and not _glob_matches(path, start, glob, segments):
            continue
        if info.st_size > request["max_file_bytes"]:
            continue
        if scanned + info.st_size > request["max_total_bytes"]:
            truncated = True
            break
        data = _read(path, request["max_file_bytes"])
        if data is None or b"\x00" in data[:8192]:  # unreadable, or binary
            continue
        scanned += len(data)
        where = display_path(path, root)
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if pattern.search(line):
                if len(matches) == request["max_matches"]:
                    return {"matches": matches, "truncated": True}
                line = line[: request["max_line_chars"]]
                matches.append({"path": where, "line_number": number, "line": line})
    return {"matches": matches, "truncated": truncated}


def _glob_matches(path: str, start: str, glob: str, segments: list[str] | None) -> bool:
    if segments is None:
        return fnmatch.fnmatchcase(os.path.basename(path), glob)
    return match_parts(os.path.relpath(path, start).split(os.sep), segments)


def _read(path: str, most: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read(most + 1)[:most]


def limit(memory_bytes: int, cpu_seconds: int) -> None:
    for kind, soft, hard in [
        (resource.RLIMIT_AS, memory_bytes, memory_bytes),
        (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
        (resource.RLIMIT_CORE, 0, 0),
    ]:
        _, current = resource.getrlimit(kind)
        if current != resource.RLIM_INFINITY:  # lowered, never raised past a hard limit
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))


def main() -> None:
    limit(int(sys.argv[1]), int(sys.argv[2]))
    try:
        reply = search(json.loads(sys.stdin.buffer.read()))
    except MemoryError:
        reply = {"error": "The search ran out of memory."}
    sys.stdout.write(json.dumps(reply, ensure_ascii=False))


if __name__ == "__main__":
    main()
