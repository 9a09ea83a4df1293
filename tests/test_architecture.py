"""The packages' imports point down only, and no module imports itself back in a cycle.

Layers, lowest first: the base modules of ``durable_sessions`` (models, settings, errors,
wire shapes), ``delivery``, ``service``, ``runtime``, the transports (websocket consumer,
REST API, admin, URLs), and ``handoff_console`` on top. Imports inside functions count
too: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("durable_sessions", "handoff_console")

# Layer of each module by prefix (the longest matching prefix wins).
LAYERS: dict[str, int] = {
    "durable_sessions": 0,
    "durable_sessions.agents": 0,
    "durable_sessions.delivery": 1,
    "durable_sessions.service": 2,
    "durable_sessions.runtime": 3,
    "durable_sessions.consumers": 4,
    "durable_sessions.frames": 4,
    "durable_sessions.routing": 4,
    "durable_sessions.middleware": 4,
    "durable_sessions.api": 4,
    "durable_sessions.admin": 4,
    "durable_sessions.urls": 4,
    "durable_sessions.management": 4,
    "durable_sessions.apps": 4,
    "durable_sessions.checks": 4,
    "durable_sessions.host_checks": 4,
    "durable_sessions.streams": 4,
    "durable_sessions.aisdk": 4,
    "handoff_console": 5,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (``from a import b`` counts ``a.b`` when it is
    a module)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    # ``from pkg import sub`` also names pkg itself: keep the submodule only.
    return {t for t in found if not any(o.startswith(t + ".") for o in found)} or found


def layer_of(name: str) -> int:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[best]


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_no_module_imports_from_a_higher_layer():
    upward = [
        f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})"
        for name, deps in graph().items()
        for dep in deps
        if layer_of(dep) > layer_of(name)
    ]
    assert upward == []


def test_the_core_app_never_imports_the_console():
    assert [
        (name, dep)
        for name, deps in graph().items()
        if name.startswith("durable_sessions")
        for dep in deps
        if dep.startswith("handoff_console")
    ] == []


def test_there_is_no_import_cycle():
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []
