"""The service's layout holds: no import cycle among its modules (imports inside functions included), and the
wings depend one way only: http → worker → engine (http may use the engine too; the engine uses neither)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "service"
PREFIX = "elastic_anytime.service."
ALLOWED = {"http": {"http", "worker", "engine", "settings"}, "worker": {"worker", "engine", "settings"},
           "engine": {"engine", "settings"},
           "settings": {"settings", "worker"}}  # fmt: skip  # settings checks a CPU list with worker.cpu_placement


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every service module `path` imports, at the top or inside a function (type-checking imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            base = node.module.removeprefix(PREFIX)
            for alias in node.names:  # `from elastic_anytime.service.http import admin` names a module
                found.add(
                    f"{base}.{alias.name}" if (ROOT / base.replace(".", "/") / f"{alias.name}.py").exists() else base
                )
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix(PREFIX) for a in node.names if a.name.startswith(PREFIX)}
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in sorted(ROOT.rglob("*.py"))}


def test_the_wings_depend_one_way() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[module.split(".")[0]]
    ]
    assert wrong == []


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif state.get(target) is None and target in edges:
                visit(target, [*path, target])
        state[module] = 2

    for module in edges:
        if module not in state:
            visit(module, [module])
    assert cycles == []
