"""What a tool is, the context it runs in, and the errors tools raise.

Errors are Cadre's own (cadre.errors), so the HTTP layer renders them and the
executor turns them into ``tool_result`` events the model can read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from cadre.errors import Forbidden, NotFound, ValidationFailed

Mode = Literal["safe", "sandbox", "full"]


@dataclass(frozen=True)
class ToolContext:
    workspace: Path  # the directory the tool is confined to
    mode: Mode = "full"


class Tool(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    category: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]  # JSON Schema of the arguments
    writes: ClassVar[bool] = False  # writes or runs things: refused in safe mode

    @abstractmethod
    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Do the work; ``args`` are already validated against ``parameters``."""


class PathOutsideWorkspace(Forbidden):
    error = "path_outside_workspace"


class ToolRefused(Forbidden):
    error = "tool_refused"


class ToolFailed(ValidationFailed):
    error = "tool_error"


class ToolNotFound(NotFound):
    error = "tool_not_found"


class FileNotFound(NotFound):
    error = "file_not_found"
