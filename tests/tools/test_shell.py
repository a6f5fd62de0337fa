"""The shell tool: a /bin/sh command in the workspace, within limits, leaving nothing behind."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cadre.engine.tools import pids_cgroup, shell_worker
from cadre.engine.tools.base import (
    ShellLimits,
    ToolContext,
    ToolRefused,
    WorkspaceQuotaExceeded,
)
from cadre.engine.tools.registry import execute_tool
from cadre.errors import ValidationFailed
from cadre.settings import Settings

LIMITS = ShellLimits(enabled=True, timeout_seconds=10, memory_mb=256, max_processes=16)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    return root


async def shell(
    workspace: Path,
    command: str,
    mode: str = "full",
    quota: int | None = None,
    **limits: Any,
) -> dict[str, Any]:
    args: dict[str, Any] = {"command": command}
    if "timeout" in limits:
        args["timeout"] = limits.pop("timeout")
    context = ToolContext(
        workspace=workspace,
        mode=mode,  # type: ignore[arg-type]
        quota_bytes=quota,
        shell_limits=replace(LIMITS, **limits),
    )
    return await execute_tool("shell", args, context)


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` is dead (missing, or a zombie awaiting its reaper) within a while."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


async def test_runs_in_the_workspace_and_reports_exit_code_and_streams(workspace: Path) -> None:
    result = await shell(workspace, "cat hello.txt; pwd; echo oops >&2; exit 3")
    assert result == {
        "exit_code": 3,
        "stdout": f"hello\n{os.path.realpath(workspace)}\n",
        "stderr": "oops\n",
        "timed_out": False,
        "truncated": False,
        "stopped": None,
    }


async def test_files_it_writes_land_in_the_workspace(workspace: Path) -> None:
    result = await shell(workspace, "echo made > made.txt && mkdir -p sub && touch sub/x")
    assert result["exit_code"] == 0
    assert (workspace / "made.txt").read_text() == "made\n"
    assert (workspace / "sub" / "x").exists()


async def test_the_environment_is_scrubbed(workspace: Path, monkeypatch) -> None:
    monkeypatch.setenv("CADRE_SECRET_KEY", "do-not-leak-this-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    result = await shell(workspace, 'env; echo "home=$HOME"')
    assert "do-not-leak" not in result["stdout"]
    names = {line.split("=", 1)[0] for line in result["stdout"].splitlines() if "=" in line}
    assert names - {"home"} <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD", "SHLVL", "_"}
    assert f"home={workspace}\n" in result["stdout"]
    assert "PATH=/usr/local/bin:/usr/bin:/bin\n" in result["stdout"]


async def test_a_relative_workspace_gives_an_absolute_home(workspace: Path, monkeypatch) -> None:
    monkeypatch.chdir(workspace.parent)  # CADRE_DATA_DIR defaults to the relative "data"
    result = await shell(Path(workspace.name), 'echo "$HOME"; pwd')
    assert result["stdout"] == f"{os.path.realpath(workspace)}\n" * 2


async def test_tmpdir_is_private_and_removed_afterwards(workspace: Path) -> None:
    result = await shell(workspace, 'echo "$TMPDIR"; touch "$TMPDIR/scratch"')
    tmpdir = Path(result["stdout"].strip())
    assert not str(tmpdir).startswith(str(workspace))
    assert not tmpdir.exists()


async def test_the_timeout_kills_the_whole_group(workspace: Path) -> None:
    started = time.monotonic()
    result = await shell(workspace, "sleep 300 & echo $!; sleep 300", timeout=0.5)
    assert time.monotonic() - started < 5
    assert result["timed_out"] is True and result["stopped"] == "timeout"
    assert result["exit_code"] == -9
    assert gone(int(result["stdout"]))


async def test_background_processes_do_not_outlive_the_command(workspace: Path) -> None:
    started = time.monotonic()
    result = await shell(workspace, "sleep 300 & echo $!")
    assert time.monotonic() - started < 5  # the open pipe does not keep the call waiting
    assert result["exit_code"] == 0 and result["timed_out"] is False
    assert gone(int(result["stdout"]))


async def test_endless_output_is_capped_and_stopped(workspace: Path) -> None:
    started = time.monotonic()
    result = await shell(workspace, "yes", output_bytes=1024)
    assert time.monotonic() - started < 5
    assert result["truncated"] is True and result["stopped"] == "output_limit"
    assert result["stdout"] == "y\n" * 512


async def test_output_within_the_cap_is_whole(workspace: Path) -> None:
    result = await shell(workspace, "head -c 1024 /dev/zero | tr '\\0' a", output_bytes=1024)
    assert result["stdout"] == "a" * 1024 and result["truncated"] is False


async def test_memory_is_limited(workspace: Path) -> None:
    result = await shell(workspace, "python3 -c 'bytearray(1 << 30); print(\"allocated\")'")
    assert result["exit_code"] != 0
    assert "allocated" not in result["stdout"]
    assert "MemoryError" in result["stderr"]


async def test_file_size_is_limited(workspace: Path) -> None:
    result = await shell(workspace, "head -c 3000000 /dev/zero > big", file_size_mb=1)
    assert result["exit_code"] != 0
    assert (workspace / "big").stat().st_size <= 1024 * 1024


async def test_limits_cannot_be_raised(workspace: Path) -> None:
    result = await shell(workspace, "ulimit -v unlimited && echo raised")
    assert "raised" not in result["stdout"]


async def test_too_many_processes_stop_the_command(workspace: Path) -> None:
    started = time.monotonic()
    result = await shell(
        workspace, "for i in $(seq 100); do sleep 30 & done; wait", max_processes=8
    )
    assert time.monotonic() - started < 10
    # Killed by the server's count, or refused a fork by the cgroup (then the shell gives up)
    assert result["stopped"] == "process_limit" and result["exit_code"] != 0


def the_kernel_caps_processes() -> bool:
    """RLIMIT_NPROC holds for any user but root; for root, only a pids cgroup does."""
    if os.geteuid() != 0:
        return True
    cgroup = pids_cgroup.create(8)
    if cgroup is not None:
        pids_cgroup.remove(cgroup)
    return cgroup is not None


@pytest.mark.skipif(
    not the_kernel_caps_processes(),
    reason="root without a pids cgroup: only the server's count holds a fork bomb back, late",
)
async def test_a_fork_bomb_is_contained(workspace: Path) -> None:
    started = time.monotonic()
    result = await shell(workspace, "b() { b | b & }; b; sleep 2", max_processes=16, timeout=10)
    assert time.monotonic() - started < 10
    assert result["timed_out"] is False
    assert result["stopped"] == "process_limit"


async def test_the_quota_refuses_a_full_workspace_and_caps_files(workspace: Path) -> None:
    with pytest.raises(WorkspaceQuotaExceeded):
        await shell(workspace, "true", quota=3)
    result = await shell(workspace, "head -c 5000 /dev/zero > big", quota=1006)
    assert result["exit_code"] != 0
    assert (workspace / "big").stat().st_size == 1000  # what the quota left


async def test_disabled_by_default(workspace: Path) -> None:
    context = ToolContext(workspace=workspace)
    with pytest.raises(ToolRefused, match="CADRE_SHELL_ENABLED"):
        await execute_tool("shell", {"command": "touch x"}, context)
    assert not (workspace / "x").exists()


async def test_safe_mode_refuses_it(workspace: Path) -> None:
    with pytest.raises(ToolRefused):
        await shell(workspace, "touch x", mode="safe")
    assert not (workspace / "x").exists()


async def test_sandbox_mode_runs_it(workspace: Path) -> None:
    assert (await shell(workspace, "echo ok", mode="sandbox"))["stdout"] == "ok\n"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"command": "sleep 1", "timeout": 121}, "args.timeout"),
        ({"command": "sleep 1", "timeout": 0}, "args.timeout"),
        ({"command": ""}, "args.command"),
        ({"command": "x" * 16385}, "args.command"),
        ({"command": "echo \x00"}, "args.command"),
    ],
)
async def test_bad_arguments_are_422(workspace: Path, args: dict, field: str) -> None:
    context = ToolContext(workspace=workspace, shell_limits=LIMITS)
    with pytest.raises(ValidationFailed) as raised:
        await execute_tool("shell", args, context)
    assert field in raised.value.details


async def test_commands_beyond_max_concurrent_wait(workspace: Path) -> None:
    started = time.monotonic()
    await asyncio.gather(*(shell(workspace, "sleep 0.4", max_concurrent=1) for _ in range(2)))
    assert time.monotonic() - started >= 0.8


def test_settings_build_the_limits() -> None:
    limits = Settings(
        shell_enabled=True,
        shell_timeout_seconds=500,
        shell_max_timeout_seconds=60,
        shell_memory_mb=128,
        shell_max_processes=5,
    ).shell_limits
    assert limits.enabled is True
    assert (limits.timeout_seconds, limits.max_timeout_seconds) == (60, 60)
    assert (limits.memory_mb, limits.max_processes) == (128, 5)
    assert Settings().shell_limits == ShellLimits()


@pytest.mark.skipif(
    os.geteuid() != 0 or not the_kernel_caps_processes(), reason="no pids cgroup for commands"
)
async def test_with_a_cgroup_a_process_in_a_new_session_is_killed_too(workspace: Path) -> None:
    result = await shell(workspace, "setsid sleep 300 & echo $!")
    assert gone(int(result["stdout"]))


@pytest.mark.skipif(os.geteuid() != 0 or not the_kernel_caps_processes(), reason="no pids cgroup")
def test_a_busy_cgroup_is_removed_by_a_later_create() -> None:
    busy = pids_cgroup.create(4)
    assert busy is not None
    pids_cgroup.remove(os.path.join(busy, "missing"), wait_seconds=0)  # nothing to do
    child = os.path.join(busy, "child")  # a cgroup with a child cannot be removed yet
    os.mkdir(child)
    pids_cgroup.remove(busy, wait_seconds=0)
    assert os.path.isdir(busy)
    os.rmdir(child)
    fresh = pids_cgroup.create(4)
    assert fresh is not None
    assert not os.path.exists(busy)
    pids_cgroup.remove(fresh)
    assert not os.path.exists(fresh)


def test_the_worker_never_asks_above_a_hard_limit_in_force() -> None:
    import subprocess
    import sys

    script = (
        "import resource, sys; sys.path.insert(0, sys.argv[1]); import shell_worker as w;"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000));"
        "w.lower(resource.RLIMIT_FSIZE, 10**9); w.lower(resource.RLIMIT_CPU, 50, 51);"
        "print(resource.getrlimit(resource.RLIMIT_FSIZE), resource.getrlimit(resource.RLIMIT_CPU))"
    )
    folder = str(Path(shell_worker.__file__).parent)
    printed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, folder], capture_output=True, text=True
    )
    assert printed.stdout.split("\n")[0] == "(1000, 1000) (50, 51)", printed.stderr
