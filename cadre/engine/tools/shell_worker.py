"""The shell tool's launcher, in the child process itself: stdlib only.

Run as ``python -I -S shell_worker.py MEMORY_BYTES CPU_SECONDS FILE_BYTES PROCESSES CGROUP
COMMAND`` in a new session, with the scrubbed environment and the workspace as working
directory: it joins the pids cgroup ``CGROUP`` if not empty, limits itself, then replaces
itself with ``/bin/sh -c COMMAND``, which inherits the limits, as does everything it starts.
Limiting here rather than in a ``preexec_fn`` keeps Python code out of the window between
fork and exec in the server, which runs threads.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys

PR_CAPBSET_DROP = 24
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24


def drop_limit_capabilities() -> None:
    """As root, give up the capabilities that lift resource limits, for good.

    Dropped from the bounding set, they are gone once ``/bin/sh`` is executed: the
    command cannot raise a hard limit again (``ulimit -v unlimited`` fails).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_SYS_ADMIN, CAP_SYS_RESOURCE):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


def tasks_of_this_user() -> int:
    """What RLIMIT_NPROC counts: the tasks (threads included) of the real user."""
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue  # gone meanwhile
    return count


def lower(kind: int, soft: int, hard: int | None = None) -> None:
    """Set a limit, never above the hard limit already in force (raising it would fail)."""
    hard = soft if hard is None else hard
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))


def limit(memory_bytes: int, cpu_seconds: int, file_bytes: int, processes: int) -> None:
    lower(resource.RLIMIT_AS, memory_bytes)
    lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    lower(resource.RLIMIT_FSIZE, file_bytes)
    lower(resource.RLIMIT_CORE, 0)
    # Counts every task of the user, not only this command's (and never applies to root,
    # whom the server's process watch bounds instead).
    lower(resource.RLIMIT_NPROC, tasks_of_this_user() + processes)


def join_cgroup(path: str) -> None:
    """Join the command's pids cgroup; failing that, the server's count still holds."""
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))
    except OSError:
        pass


def main() -> None:
    memory, cpu, file_size, processes = (int(arg) for arg in sys.argv[1:5])
    cgroup, command = sys.argv[5], sys.argv[6]
    if cgroup:
        join_cgroup(cgroup)
    if os.geteuid() == 0:
        drop_limit_capabilities()
    limit(memory, cpu, file_size, processes)
    os.execve("/bin/sh", ["sh", "-c", command], os.environ)


if __name__ == "__main__":
    main()
