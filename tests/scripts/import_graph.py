"""The import graph of src/text2lora, read from the source (nothing is imported): which module imports which.

    python tests/scripts/import_graph.py            # prints every cycle (exit 1 if there is one)
    python tests/scripts/import_graph.py --lazy     # also counts imports inside functions

Used by tests/test_architecture.py. An edge a -> b is an import of b written in a (`from .b import x`,
`from . import b`, `import text2lora.b`); imports under `if TYPE_CHECKING:` are not run and are left out.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "text2lora"
SRC = Path(__file__).resolve().parents[2] / "src" / PACKAGE


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, lazy: bool):
    """Import nodes run at module import (with `lazy`, those inside functions and methods too)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if lazy:
                yield from (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
        elif isinstance(node, ast.ClassDef):
            todo.extend(node.body)
        else:
            todo.extend(ast.iter_child_nodes(node))


def graph(lazy: bool = False, src: Path = SRC) -> dict[str, set[str]]:
    modules = {module_name(p, src): p for p in src.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")), lazy):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = package
                for _ in range(node.level - 1 if node.level else 0):
                    base = base.rpartition(".")[0]
                source = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
                named = [f"{source}.{alias.name}" for alias in node.names]
                # `from . import b` runs module b, not the package again (it is already imported): an edge to the
                # package only for names that are not modules (attributes of the package's __init__).
                whole = node.module is not None or any(n not in modules for n in named)
                targets = ([source] if whole else []) + named
            for target in targets:
                if target in modules and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_path_within(sorted(component), edges))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _path_within(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start, members = component[0], set(component)
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges[node] & members):
            if nxt == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return component


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lazy", action="store_true", help="count imports inside functions too")
    parser.add_argument("--src", type=Path, default=SRC, help="the package folder (default: this checkout's)")
    args = parser.parse_args(argv)
    found = cycles(graph(lazy=args.lazy, src=args.src.resolve()))
    for cycle in found:
        print(" -> ".join(cycle))
    print(f"{len(found)} import cycle(s) in {PACKAGE} ({'all imports' if args.lazy else 'module-level imports'})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
