"""The architecture as a test: imports go one way between layers, and no module imports
itself back through others.

Every ``import`` in ``profilesync/`` counts, the ones inside functions too: a lazy import
is still a dependency. The layers, lowest first::

    base        model, errors, mapping, sandbox, secrets, faults, scratch
    warehouses  one folder per kind behind warehouses/protocol.py
    store seam  store/protocol.py with its parts store/access.py and store/alerting.py (and store/home.py)
    engine      the sync path; speaks to warehouses and the store protocol
    events, query   the events domain and the query compiler, over the store protocol
    backends    store/duckdb/ (implements the protocol)
    app         the use cases, the one place that picks a backend
    shells      cli/, server/, demo/

A module may import its own layer and any layer below it. Shims kept for one release
(``profilesync.sources``, ``profilesync.sync``, ...) are outside the layers and nothing in
the package may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "profilesync"

#: (layer, module prefixes) lowest first
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "profilesync.model",
            "profilesync.errors",
            "profilesync.mapping",
            "profilesync.sandbox",
            "profilesync.secrets",
            "profilesync.faults",
            "profilesync.scratch",
        ),
    ),
    ("warehouses", ("profilesync.warehouses",)),
    (
        "store seam",
        (
            "profilesync.store.protocol",
            "profilesync.store.access",
            "profilesync.store.alerting",
            "profilesync.store.metrics",
            "profilesync.store.cohorts",
            "profilesync.store.home",
        ),
    ),
    ("engine", ("profilesync.engine",)),
    ("events, query", ("profilesync.events", "profilesync.query", "profilesync.alerts")),
    ("backends", ("profilesync.store",)),
    ("app", ("profilesync.app",)),
    ("shells", ("profilesync.cli", "profilesync.server", "profilesync.demo")),
]

#: old paths that re-export moved names for one release; nothing inside may use them
SHIMS = (
    "profilesync.sources",
    "profilesync.sync",
    "profilesync.events.store",
    "profilesync.events.query",
    "profilesync.events.lookup",
    "profilesync.events.timerange",
    "profilesync.events.api",
    "profilesync.events.cli",
    "profilesync.events.demo_events",
    "profilesync.store.base",
    "profilesync._cli_connections",
    "profilesync._cli_sources",
)

#: what the shells may import besides app/: value types and parsing
SHELL_ALLOWED = (
    "profilesync.app",
    "profilesync.model",
    "profilesync.errors",
    "profilesync.mapping",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_shim(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SHIMS)


def layer_of(name: str) -> int | None:
    """The index of the most specific layer naming ``name``'s module (None: the package root)."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = name == prefix or name.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every profilesync module ``name`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("profilesync") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) - {"profilesync"} for name, path in mods.items()}


def test_imports_go_one_way() -> None:
    wrong = []
    for name, targets in sorted(graph().items()):
        if is_shim(name) or name == "profilesync":
            continue
        mine = layer_of(name)
        for target in sorted(targets):
            if is_shim(target):
                wrong.append(f"{name} imports {target}, a shim kept for old callers")
                continue
            theirs = layer_of(target)
            if mine is None or theirs is None:
                continue
            shell_to_shell = theirs == mine  # e.g. `profilesync serve` starts the server
            if LAYERS[mine][0] == "shells" and not (
                shell_to_shell or target.startswith(SHELL_ALLOWED)
            ):
                wrong.append(f"{name} imports {target}: a shell calls app/ only")
            elif theirs > mine:
                wrong.append(
                    f"{name} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]}), a layer above"
                )
    assert not wrong, "\n".join(wrong)


def test_no_backend_outside_store_and_app() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if not is_shim(name) and not name.startswith(("profilesync.store", "profilesync.app"))
        for target in targets
        if target.startswith("profilesync.store.duckdb")
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= 500, f"{name} has {lines} lines: split it along its seams"
