"""A pids cgroup per shell command, where the server may make one: the kernel's process cap.

RLIMIT_NPROC counts all of a user's processes and never applies to root; counting a
command's processes from the server loses the race against a fork bomb, which takes the
CPU the counting needs. A cgroup's ``pids.max`` makes the kernel refuse the fork instead,
and its member list finds every process of the command, those that left its session too.

Used when the server can create a child of its own cgroup in a pids hierarchy: cgroup v1
(``/sys/fs/cgroup/pids``, writable by root), or cgroup v2 with the ``pids`` controller
delegated to the server's cgroup. Elsewhere ``create`` returns ``None`` and the shell
tool relies on its session count alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import time

log = logging.getLogger("cadre.engine")

# Cgroups whose removal timed out (killed members not yet reaped): retried on each create.
_leftovers: set[str] = set()


def _hierarchy() -> str | None:
    """The directory of this process's cgroup in a hierarchy with the pids controller."""
    try:
        with open("/proc/self/cgroup") as handle:
            memberships = [line.rstrip("\n").split(":", 2) for line in handle]
        with open("/proc/self/mountinfo") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    for fields in mounts:
        separator = fields.index("-")
        mount_root, mount_point = fields[3], fields[4]
        fstype, options = fields[separator + 1], fields[separator + 3].split(",")
        if mount_root != "/":
            continue  # a bind of part of a hierarchy: paths would not line up
        for _, controllers, path in memberships:
            v1 = fstype == "cgroup" and "pids" in options and "pids" in controllers.split(",")
            v2 = fstype == "cgroup2" and controllers == ""
            if v1 or v2:
                directory = os.path.join(mount_point, path.lstrip("/"))
                if v2 and not _delegates_pids(directory):
                    continue
                return directory
    return None


def _delegates_pids(directory: str) -> bool:
    try:
        with open(os.path.join(directory, "cgroup.subtree_control")) as handle:
            return "pids" in handle.read().split()
    except OSError:
        return False


def create(max_pids: int) -> str | None:
    """A new cgroup allowing ``max_pids`` tasks, or ``None`` where none can be made."""
    parent = _hierarchy()
    if parent is None:
        return None
    for stale in list(_leftovers):
        remove(stale, wait_seconds=0)
    path = os.path.join(parent, f"cadre-shell-{os.getpid()}-{secrets.token_hex(6)}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    try:
        with open(os.path.join(path, "pids.max"), "w") as handle:
            handle.write(str(max_pids))
    except OSError:
        remove(path)
        return None
    return path


def join(path: str) -> None:
    """Move the calling process into the cgroup (its children follow)."""
    with open(os.path.join(path, "cgroup.procs"), "w") as handle:
        handle.write(str(os.getpid()))


def members(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as handle:
            return [int(line) for line in handle if line.strip()]
    except OSError:
        return []


def refused_forks(path: str) -> int:
    """How many forks ``pids.max`` refused (``pids.events``)."""
    try:
        with open(os.path.join(path, "pids.events")) as handle:
            for line in handle:
                name, _, count = line.partition(" ")
                if name == "max":
                    return int(count)
    except (OSError, ValueError):
        pass
    return 0


def kill_all(path: str, rounds: int = 50) -> None:
    """SIGKILL every member until none is left: a forking member is refused past
    ``pids.max``, so each round leaves fewer."""
    for _ in range(rounds):
        found = members(path)
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def remove(path: str, wait_seconds: float = 2.0) -> None:
    """Remove the (emptied) cgroup; killed members may take a while to be reaped (a fork
    bomb's thousands), so one still busy is left for the next ``create`` to retry."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if path not in _leftovers:
                log.info("shell cgroup %s still busy; removal retried later", path)
            _leftovers.add(path)
            return
        _leftovers.discard(path)
        return
