"""What a tool is, the context it runs in, and the errors tools raise.

Errors are Cadre's own (cadre.errors), so the HTTP layer renders them as
problem+json and the executor turns them into ``tool_result`` events the model
can read and recover from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from cadre.errors import Forbidden, NotFound, PayloadTooLarge, ValidationFailed

Mode = Literal["safe", "sandbox", "full"]
Kind = Literal["read", "edit", "execute"]


@dataclass(frozen=True)
class PathLimits:
    """How long a workspace path may be, and how many levels deep (``CADRE_MAX_PATH_*``)."""

    max_depth: int = 32
    max_length: int = 1024


DEFAULT_PATH_LIMITS = PathLimits()


@dataclass(frozen=True)
class AstLimits:
    """python_ast_parser's source size and parallel parses (``CADRE_MAX_AST_*``)."""

    max_source_bytes: int = 256 * 1024
    max_workers: int = 2


DEFAULT_AST_LIMITS = AstLimits()


@dataclass(frozen=True)
class ShellLimits:
    """What one ``shell`` command may use (``CADRE_SHELL_*``); ``enabled`` is off by default."""

    enabled: bool = False
    timeout_seconds: float = 30.0
    max_timeout_seconds: float = 120.0
    output_bytes: int = 64 * 1024  # per stream
    memory_mb: int = 1024  # address space, per process
    cpu_seconds: int = 60  # per process
    file_size_mb: int = 64
    max_processes: int = 64
    max_concurrent: int = 4


DEFAULT_SHELL_LIMITS = ShellLimits()


@dataclass(frozen=True)
class ToolContext:
    """Where a tool may act: ``workspace`` is the user's workspace or a sandbox copy of it.

    ``quota_bytes`` caps the workspace's total size for writing tools
    (``CADRE_WORKSPACE_QUOTA_MB``); ``None`` means no cap.
    """

    workspace: Path
    mode: Mode = "full"
    path_limits: PathLimits = DEFAULT_PATH_LIMITS
    ast_limits: AstLimits = DEFAULT_AST_LIMITS
    quota_bytes: int | None = None
    shell_limits: ShellLimits = DEFAULT_SHELL_LIMITS


class Tool(ABC):
    """A built-in tool; one stateless instance serves every call."""

    name: ClassVar[str]
    description: ClassVar[str]
    category: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]  # JSON Schema of the arguments
    kind: ClassVar[Kind]  # what a permission mode weighs (cadre.engine.tools.permissions)
    writes: ClassVar[bool] = False  # writes or runs things: refused in safe mode

    @abstractmethod
    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Do the work; ``args`` are already validated against ``parameters``."""


class PathOutsideWorkspace(Forbidden):
    """A path that leaves the workspace, by ``..``, absolute form or symlink."""

    error = "path_outside_workspace"


class PathTooLong(ValidationFailed):
    """A path longer or deeper than the settings allow (the file system would refuse it anyway)."""

    error = "path_too_long"


class WorkspaceQuotaExceeded(PayloadTooLarge):
    """A write that would take the workspace over its quota (``CADRE_WORKSPACE_QUOTA_MB``)."""

    error = "workspace_quota_exceeded"


class ToolRefused(Forbidden):
    """The tool exists but the mode does not allow it (a writing tool in safe mode)."""

    error = "tool_refused"


class ToolFailed(ValidationFailed):
    """The tool ran but could not do what was asked (syntax error, division by zero, ...)."""

    error = "tool_error"


class ToolNotFound(NotFound):
    error = "tool_not_found"


class FileNotFound(NotFound):
    """The path is inside the workspace but names nothing there."""

    error = "file_not_found"
