"""Run a ``/bin/sh`` command in the workspace, within limits (``CADRE_SHELL_*``).

The command runs in a session of its own (``shell_worker`` sets its resource limits
and then executes ``/bin/sh -c``) with a scrubbed environment: only ``PATH``,
``HOME`` (the workspace), ``LANG`` and ``TMPDIR`` (a private directory removed
afterwards). Whatever ends it (its own exit, the timeout, too much output, too many
processes), every process left in its session is killed: nothing outlives the call.

This bounds what a command costs, not what it can reach: it runs as the server's
user and can read whatever that user can. Hence off unless ``CADRE_SHELL_ENABLED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from cadre.engine.tools import pids_cgroup, shell_worker
from cadre.engine.tools.base import ShellLimits, Tool, ToolContext, ToolFailed, ToolRefused
from cadre.engine.tools.isolated import slot
from cadre.engine.tools.workspace import quota_refusal, workspace_size
from cadre.errors import ValidationFailed

WORKER = Path(shell_worker.__file__)
MAX_COMMAND_CHARS = 16 * 1024
PATH = "/usr/local/bin:/usr/bin:/bin"
WATCH_SECONDS = 0.05  # how often the session's processes are counted
EXIT_POLL_SECONDS = 0.02
DRAIN_SECONDS = 2.0  # how long output is still read once the session is killed
MIB = 1024 * 1024


class Shell(Tool):
    name = "shell"
    description = (
        "Run a /bin/sh command in the workspace (its working directory and HOME); returns "
        "exit_code, stdout and stderr. Time, memory, CPU, file size, processes and output "
        "are limited; background processes do not outlive the command."
    )
    category = "shell"
    kind = "execute"
    writes = True
    parameters = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "minLength": 1, "maxLength": MAX_COMMAND_CHARS},
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "Seconds before the command is killed (CADRE_SHELL_TIMEOUT_SECONDS "
                "by default, at most CADRE_SHELL_MAX_TIMEOUT_SECONDS).",
            },
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        limits = ctx.shell_limits
        if not limits.enabled:
            raise ToolRefused("The shell tool is disabled on this server (CADRE_SHELL_ENABLED).")
        command: str = args["command"]
        if "\x00" in command:
            raise ValidationFailed(
                "The command may not contain NUL bytes.", details={"args.command": "contains NUL"}
            )
        timeout = float(args.get("timeout", limits.timeout_seconds))
        if timeout > limits.max_timeout_seconds:
            raise ValidationFailed(
                f"The timeout may be at most {limits.max_timeout_seconds:g} seconds.",
                details={"args.timeout": f"more than {limits.max_timeout_seconds:g}"},
            )
        return await run_command(command, ctx.workspace, limits, timeout, ctx.quota_bytes)


async def run_command(
    command: str,
    workspace: Path,
    limits: ShellLimits,
    timeout: float,
    quota_bytes: int | None = None,
) -> dict[str, Any]:
    """Run ``command``; at most ``limits.max_concurrent`` at once, the rest wait."""
    async with slot("shell", limits.max_concurrent):
        file_bytes = await _file_size_allowed(workspace, limits, quota_bytes)
        home = os.path.realpath(workspace)  # CADRE_DATA_DIR may be relative
        private_tmp = await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "cadre-shell-")
        cgroup: str | None = None
        try:
            # The kernel's cap where the server can have one: one more task than allowed, so
            # that going past the limit is seen (and the command stopped), not only refused.
            cgroup = await anyio.to_thread.run_sync(pids_cgroup.create, limits.max_processes + 1)
            try:
                process = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-I", "-S", str(WORKER)),
                    *(str(limits.memory_mb * MIB), str(limits.cpu_seconds), str(file_bytes)),
                    *(str(limits.max_processes), cgroup or "", command),
                    cwd=home,
                    env={"PATH": PATH, "HOME": home, "LANG": "C.UTF-8", "TMPDIR": private_tmp},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ToolFailed(f"The command could not be started: {exc}.") from exc
            return await _supervise(process, _Group(process.pid, cgroup), timeout, limits)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(shutil.rmtree, private_tmp, True)
                if cgroup is not None:
                    await anyio.to_thread.run_sync(pids_cgroup.remove, cgroup)


async def _file_size_allowed(workspace: Path, limits: ShellLimits, quota_bytes: int | None) -> int:
    """RLIMIT_FSIZE: the setting, or what is left of the quota if that is less."""
    allowed = limits.file_size_mb * MIB
    if quota_bytes is None:
        return allowed
    used = await anyio.to_thread.run_sync(workspace_size, workspace, quota_bytes)
    if used >= quota_bytes:
        raise quota_refusal(quota_bytes, "The workspace is full: no command runs in it.")
    return min(allowed, quota_bytes - used)


@dataclass
class _Capture:
    """One stream's first ``cap`` bytes; ``overflowed`` once more was offered."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    overflowed: bool = False

    async def drain(self, stream: asyncio.StreamReader, overflow: asyncio.Event) -> None:
        """Read to the end, keeping the first ``cap`` bytes. Past them the command is
        stopped, but reading goes on (discarding): a pipe left unread never reaches its end,
        and the subprocess transport only finishes once both pipes have."""
        while chunk := await stream.read(64 * 1024):
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room and not self.overflowed:
                self.overflowed = True
                overflow.set()

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class _Group:
    """A command's processes: its session, and its pids cgroup if it has one."""

    session: int
    cgroup: str | None

    def count(self, enough: int) -> int:
        if self.cgroup is not None:
            return len(pids_cgroup.members(self.cgroup))
        return len(session_members(self.session, enough))

    def kill(self) -> bool:
        """Kill every process left; whether the cgroup refused a fork along the way."""
        kill_session(self.session)
        if self.cgroup is None:
            return False
        pids_cgroup.kill_all(self.cgroup)
        return pids_cgroup.refused_forks(self.cgroup) > 0


async def _supervise(
    process: asyncio.subprocess.Process, group: _Group, timeout: float, limits: ShellLimits
) -> dict[str, Any]:
    assert process.stdout is not None and process.stderr is not None
    stop = asyncio.Event()  # too much output, or too many processes
    out, err = _Capture(limits.output_bytes), _Capture(limits.output_bytes)
    crowded = [False]
    tasks = [
        asyncio.create_task(out.drain(process.stdout, stop)),
        asyncio.create_task(err.drain(process.stderr, stop)),
    ]
    watch = asyncio.create_task(_watch(group, limits.max_processes, stop, crowded))
    exited = asyncio.create_task(_exit_of(process))
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {exited, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (watch, stopped, exited):
            task.cancel()
        with anyio.CancelScope(shield=True):
            # The command ended or must end: nothing it started stays behind.
            if await anyio.to_thread.run_sync(group.kill):
                crowded[0] = True
            # Not process.wait(): in Python 3.11 it also waits for the pipes to close.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_exit_of(process), DRAIN_SECONDS)
            _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
            if pending:  # a process that left the session (and had no cgroup) holds a pipe
                for task in pending:
                    task.cancel()
                process._transport.close()  # type: ignore[attr-defined]  # no public way
    timed_out = not done
    truncated = out.overflowed or err.overflowed
    reason = (
        "timeout"
        if timed_out
        else "process_limit"
        if crowded[0]
        else "output_limit"
        if truncated and exited not in done
        else None
    )
    return {
        "exit_code": process.returncode,
        "stdout": out.text(),
        "stderr": err.text(),
        "timed_out": timed_out,
        "truncated": truncated,
        "stopped": reason,
    }


async def _exit_of(process: asyncio.subprocess.Process) -> None:
    """Until the shell itself exits (``wait()`` would also wait for its pipes to close,
    which a background process holding them open delays until it is killed)."""
    while process.returncode is None:
        await asyncio.sleep(EXIT_POLL_SECONDS)


async def _watch(group: _Group, most: int, stop: asyncio.Event, crowded: list[bool]) -> None:
    """Stop the command once it holds more than ``most`` live processes.

    RLIMIT_NPROC counts all of the user's tasks and never applies to root: this
    count covers the command alone, whoever runs the server.
    """
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        if await anyio.to_thread.run_sync(group.count, most + 1) > most:
            crowded[0] = True
            stop.set()
            return


def session_members(session: int, enough: int | None = None) -> list[int]:
    """The live (not zombie) processes of a session, from ``/proc``; the first ``enough``
    of them if given (a fork bomb's thousands need not all be read to know it is one)."""
    members: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == session:
            members.append(int(entry))
            if len(members) == enough:
                break
    return members


def kill_session(session: int, rounds: int = 50) -> None:
    """SIGKILL the session's process group, then any member left, until none is.

    A process that started a session of its own (``setsid``) is no longer found:
    only a container or cgroup would contain that.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, signal.SIGKILL)
    for _ in range(rounds):
        members = session_members(session)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
