"""Parse Python source and report its functions, classes and imports (nothing is run)."""

from __future__ import annotations

import ast
from typing import Any

import anyio.to_thread

from cadre.engine.tools.base import Tool, ToolContext, ToolFailed

MAX_CODE_CHARS = 1024 * 1024


class PythonAstParser(Tool):
    name = "python_ast_parser"
    description = "Parse Python code and list its functions, classes and imports"
    category = "code"
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "maxLength": MAX_CODE_CHARS}},
        "required": ["code"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        # Parsing a megabyte takes a while: do it off the event loop.
        return await anyio.to_thread.run_sync(outline, args["code"])


def outline(code: str) -> dict[str, Any]:
    """Functions (with qualified names, nested ones too), classes and imports of ``code``."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ToolFailed(
            f"The code does not parse: {exc.msg} (line {exc.lineno}).",
            details={"line": exc.lineno, "offset": exc.offset},
        ) from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ToolFailed(f"The code cannot be parsed: {exc or type(exc).__name__}.") from exc
    collector = _Collector()
    try:
        collector.visit(tree)
    except RecursionError as exc:  # a base class expression too deep to unparse
        raise ToolFailed("The code nests too deeply to outline.") from exc
    return {
        "functions": collector.functions,
        "classes": collector.classes,
        "imports": collector.imports,
    }


class _Collector(ast.NodeVisitor):
    """Walks statements only: definitions and imports are statements, and statement
    nesting is bounded by the parser, while expressions can nest deep enough to
    exhaust the recursion limit."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.functions: list[dict[str, Any]] = []
        self.classes: list[dict[str, Any]] = []
        self.imports: list[dict[str, Any]] = []

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                self.visit(child)

    def _qualified(self, name: str) -> str:
        return ".".join([*self.scope, name])

    def _nested(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        arguments = node.args
        names = [a.arg for a in [*arguments.posonlyargs, *arguments.args]]
        if arguments.vararg:
            names.append("*" + arguments.vararg.arg)
        names += [a.arg for a in arguments.kwonlyargs]
        if arguments.kwarg:
            names.append("**" + arguments.kwarg.arg)
        self.functions.append(
            {
                "name": self._qualified(node.name),
                "lineno": node.lineno,
                "args": names,
                "async": isinstance(node, ast.AsyncFunctionDef),
            }
        )
        self._nested(node, node.name)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        methods = [
            n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        self.classes.append(
            {
                "name": self._qualified(node.name),
                "lineno": node.lineno,
                "bases": [ast.unparse(base) for base in node.bases],
                "methods": methods,
            }
        )
        self._nested(node, node.name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append({"module": alias.name, "names": [], "lineno": node.lineno})

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        names = [alias.name for alias in node.names]
        self.imports.append({"module": module, "names": names, "lineno": node.lineno})
