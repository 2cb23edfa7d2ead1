"""The layers are folders, and this test holds them (README, "Code map").

- ``core/`` is pure: the standard library and ``core`` only.
- ``app/`` (services and ports) and ``present/`` (rendering) import no adapter, no wiring and no
  third-party package: they drive ports.
- only ``adapters/`` import vendor SDKs; adapters implement ports and never reach up into the
  services, the faces or the wiring.
- the faces (``faces/``, ``main.py``) import the application layer, the presenters and the wiring,
  never an adapter.
- no import cycles among modules, counting the imports a module runs when it is imported.

Every import counts, also one made lazily inside a function. A failure names the offending import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"

# For each layer: the first-party layers it may import. Third-party packages only where listed.
ALLOWED = {
    "core": {"core"},
    "config": {"core"},
    "logs": {"core"},
    "app": {"core", "app", "config", "logs"},
    "present": {"core", "app", "config", "logs", "present"},
    "adapters": {"core", "app.ports", "config", "logs", "adapters"},
    "faces": {"core", "app", "present", "config", "logs", "wiring", "faces"},
    "main": {"core", "app", "present", "config", "logs", "wiring", "faces"},
    "wiring": {"core", "app", "present", "config", "logs", "adapters", "faces"},
    "__main__": {"faces"},
}
# The ports adapters implement: the services' and doctor's probes'.
PORTS = ("orchestrator.app.ports", "orchestrator.app.probe_ports")
THIRD_PARTY = {"adapters": None, "main": {"functions_framework"}}  # None: any


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "main":
        return "main"
    return parts[1] if len(parts) > 1 else "orchestrator"


def _modules() -> dict[str, Path]:
    found = {"main": ROOT / "main.py"}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: list[tuple[int, str]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "orchestrator" or node.module.startswith("orchestrator."):
                # ``from orchestrator.app import sync`` names the module orchestrator.app.sync
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _first_party_layer(imported: str, modules: dict[str, Path]) -> str | None:
    """The layer (``app.ports`` kept whole) of an orchestrator module, or None if none."""
    while imported and imported not in modules:
        imported = imported.rpartition(".")[0]
    if not imported.startswith("orchestrator.") and imported != "main":
        return None
    layer = _layer(imported)
    return "app.ports" if imported in PORTS else layer


def test_each_layer_imports_only_what_it_may() -> None:
    modules = _modules()
    offences: list[str] = []
    for name, path in modules.items():
        layer = _layer(name)
        if layer == "orchestrator":  # the package's own __init__
            continue
        allowed = ALLOWED[layer]
        for line, imported in _imports(path):
            top = imported.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {imported}"
            if top == "orchestrator":
                target = _first_party_layer(imported, modules)
                if target is None or target == "orchestrator":
                    continue
                ok = target in allowed or (target == "app.ports" and "app" in allowed)
                if not ok:
                    offences.append(f"{where}: {layer} may import only {sorted(allowed)}")
            elif top == "__future__" or top in sys.stdlib_module_names:
                continue
            else:
                permitted = THIRD_PARTY.get(layer, set())
                if permitted is not None and top not in permitted:
                    offences.append(f"{where}: only adapters import vendor packages")
    assert offences == []


def test_no_import_cycles() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for _, imported in _imports(path, top_level_only=True):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    cycles: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert long == {}
