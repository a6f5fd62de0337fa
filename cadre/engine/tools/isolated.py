"""Running a tool's work in a resource-limited child process and reading its JSON reply.

python_ast_parser and filesystem_grep run code that a hostile input can make slow or
huge (deep nesting, catastrophic backtracking): a child with memory and CPU limits of
its own (set by the worker script from its arguments) cannot take the server with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import weakref
from collections.abc import Hashable
from pathlib import Path
from typing import Any

Slots = dict[tuple[Hashable, int], asyncio.Semaphore]
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Slots] = weakref.WeakKeyDictionary()


def slot(kind: Hashable, at_once: int) -> asyncio.Semaphore:
    """The process's ``at_once`` slots for one kind of child process (one set per event
    loop: a semaphore belongs to one)."""
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault((kind, at_once), asyncio.Semaphore(at_once))


async def run_worker(
    worker: Path,
    payload: bytes,
    *,
    memory_bytes: int,
    cpu_seconds: int,
    wall_seconds: float,
    workers: int,
) -> dict[str, Any] | None:
    """``worker``'s JSON object reply to ``payload`` on its stdin; None when it ran out of
    time or memory, crashed, or answered something else. At most ``workers`` run at once."""
    async with slot(worker, workers):
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-I", "-S", str(worker)),
            *(str(memory_bytes), str(cpu_seconds)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(payload), wall_seconds)
        except TimeoutError:
            output = b""
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
    try:
        reply = json.loads(output) if process.returncode == 0 else None
    except ValueError:
        reply = None
    return reply if isinstance(reply, dict) else None
