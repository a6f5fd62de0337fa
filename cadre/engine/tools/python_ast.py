"""Parse Python source and report its functions, classes and imports (nothing is run).

Parsing is done in a child process (``ast_worker``) with its address space and CPU
time limited, at most ``AstLimits.max_workers`` at once per server process, on
sources of at most ``AstLimits.max_source_bytes``: a huge or pathological source
costs a bounded child, never the server's memory or its event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cadre.engine.tools import ast_worker
from cadre.engine.tools.base import AstLimits, Tool, ToolContext, ToolFailed
from cadre.engine.tools.isolated import run_worker
from cadre.errors import ValidationFailed

WORKER = Path(ast_worker.__file__)
WORKER_MEMORY_BYTES = 512 * 1024 * 1024  # address space of one parse, interpreter included
WORKER_CPU_SECONDS = 10
WORKER_WALL_SECONDS = 30  # also bounds time spent waiting for stdin/stdout


class PythonAstParser(Tool):
    name = "python_ast_parser"
    description = "Parse Python code and list its functions, classes and imports"
    category = "code"
    kind = "read"
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string"}},
        "required": ["code"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return await parse_isolated(args["code"], ctx.ast_limits)


class SourceTooLarge(ValidationFailed):
    error = "source_too_large"


async def parse_isolated(code: str, limits: AstLimits) -> dict[str, Any]:
    """``outline(code)``, computed by a resource-limited child process."""
    source = code.encode("utf-8", "surrogatepass")
    if len(source) > limits.max_source_bytes:
        raise SourceTooLarge(
            f"The code is {len(source)} bytes; at most {limits.max_source_bytes} are parsed.",
            details={"args.code": f"longer than {limits.max_source_bytes} bytes"},
        )
    reply = await run_worker(
        WORKER,
        source,
        memory_bytes=WORKER_MEMORY_BYTES,
        cpu_seconds=WORKER_CPU_SECONDS,
        wall_seconds=WORKER_WALL_SECONDS,
        workers=limits.max_workers,
    )
    if reply is None:
        raise ToolFailed(
            "The code is too large, too deeply nested or too slow to parse within the limits."
        )
    return _outline_or_fail(reply)


def outline(code: str) -> dict[str, Any]:
    """Functions (with qualified names, nested ones too), classes and imports of ``code``.

    In this process: for tests and trusted callers; the tool itself uses ``parse_isolated``.
    """
    return _outline_or_fail(ast_worker.outline(code))


def _outline_or_fail(reply: dict[str, Any]) -> dict[str, Any]:
    if "error" in reply:
        raise ToolFailed(reply["error"], details=reply.get("details"))
    return reply["outline"]
