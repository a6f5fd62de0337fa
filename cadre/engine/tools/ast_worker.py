"""The python_ast_parser's parse, in a child process of its own: stdlib only.

Run as ``python -I -S ast_worker.py MEMORY_BYTES CPU_SECONDS``: it limits its own
address space and CPU time first, reads UTF-8 source on stdin, and writes one JSON
object on stdout: ``{"outline": {...}}`` or ``{"error": "...", "details": {...}}``.
A parse that outgrows the limits kills only this process (the server sees it exit
without a reply), never the server's memory or event loop.
"""

from __future__ import annotations

import ast
import json
import resource
import sys
from typing import Any


def outline(code: str) -> dict[str, Any]:
    """``{"outline": functions, classes and imports}``, or ``{"error": ..., "details": ...}``."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return {
            "error": f"The code does not parse: {exc.msg} (line {exc.lineno}).",
            "details": {"line": exc.lineno, "offset": exc.offset},
        }
    except MemoryError:
        return {"error": "The code is too large to parse within the memory limit."}
    except (ValueError, RecursionError) as exc:
        return {"error": f"The code cannot be parsed: {str(exc) or type(exc).__name__}."}
    collector = _Collector()
    try:
        collector.visit(tree)
    except RecursionError:  # a base class expression too deep to unparse
        return {"error": "The code nests too deeply to outline."}
    return {
        "outline": {
            "functions": collector.functions,
            "classes": collector.classes,
            "imports": collector.imports,
        }
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


def limit(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> None:
    limit(int(sys.argv[1]), int(sys.argv[2]))
    try:
        code = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        reply: dict[str, Any] = {"error": "The code is not UTF-8."}
    else:
        try:
            reply = outline(code)
        except MemoryError:
            reply = {"error": "The code is too large to parse within the memory limit."}
    sys.stdout.write(json.dumps(reply, ensure_ascii=False))


if __name__ == "__main__":
    main()
