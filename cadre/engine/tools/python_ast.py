"""Parse Python source and report its functions, classes and imports (nothing is run)."""

from __future__ import annotations

import ast
from typing import Any

from cadre.engine.tools.base import Tool, ToolContext, ToolFailed


class PythonAstParser(Tool):
    name = "python_ast_parser"
    description = "Parse Python code and list its functions, classes and imports"
    category = "code"
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "maxLength": 1024 * 1024}},
        "required": ["code"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        try:
            tree = ast.parse(args["code"])
        except SyntaxError as exc:
            raise ToolFailed(
                f"The code does not parse: {exc.msg} (line {exc.lineno}).",
                details={"line": exc.lineno, "offset": exc.offset},
            ) from exc
        except (ValueError, RecursionError, MemoryError) as exc:
            raise ToolFailed(f"The code cannot be parsed: {exc}.") from exc
        collector = _Collector()
        collector.visit(tree)
        return {
            "functions": collector.functions,
            "classes": collector.classes,
            "imports": collector.imports,
        }


class _Collector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.scope: list[str] = []
        self.functions: list[dict[str, Any]] = []
        self.classes: list[dict[str, Any]] = []
        self.imports: list[dict[str, Any]] = []

    def _qualified(self, name: str) -> str:
        return ".".join([*self.scope, name])

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
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

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
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append({"module": alias.name, "names": [], "lineno": node.lineno})

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        names = [alias.name for alias in node.names]
        self.imports.append({"module": module, "names": names, "lineno": node.lineno})
