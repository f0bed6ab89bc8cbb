"""The package's imports go one way (ARCHITECTURE.md, "Import direction"): a module imports only from its own part
of the package or from a lower layer, and no chain of imports comes back to where it started. Imports inside
functions count too: a late import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runner"

# Lowest first. A part is a top-level module or sub-package of runner/.
LAYERS: list[set[str]] = [
    {"errors", "__version__", "runner", "console"},  # foundation (runner = the package's __init__)
    {"contract", "resources"},
    {"spec", "db"},
    {"compile"},
    {"calibrate"},
    {"plan", "dbcheck", "synth", "snapshot", "engine"},
    {"metrics"},  # wraps the engine's ProgressSink; pipeline and load expose it
    {"report"},
    {"notify"},  # webhooks: the spec's URLs and report.html's verdict words; pipeline, load and cli send
    {"validate"},
    {"rollback_report"},
    {"pipeline"},
    {"operate"},  # checkpoint and the emergency rollback: pipeline's rollback printing and spec lookup
    {"load"},
    {"review"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "runner"


def imports() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "runner":
                submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets += submodules
                if len(submodules) < len(node.names):  # a name defined by the module (or package) itself
                    targets.append(node.module)
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.split(".")[0] == "runner"]
            # A submodule importing its own package's __init__ is how packages re-export; not a stage dependency.
            graph[name].update(t for t in targets if t in modules and not name.startswith(f"{t}."))
    return graph


def test_every_part_has_a_layer() -> None:
    parts = {part_of(m) for m in imports()} | {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts - set(LAYER) == set(), "give the new part a layer in LAYERS (and ARCHITECTURE.md)"


def test_no_upward_import() -> None:
    upward = sorted(f"{src} -> {dst}" for src, dsts in imports().items() for dst in dsts
                    if part_of(src) != part_of(dst) and LAYER[part_of(dst)] >= LAYER[part_of(src)])
    assert upward == []


def test_no_import_cycle() -> None:
    graph = imports()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_rule_can_fail() -> None:
    """The checks above are not vacuous: the graph has the edges the layers talk about."""
    graph = imports()
    assert "runner.compile.params" in graph["runner.plan"] and "runner.compile.params" in graph["runner.engine.chunk"]
    assert LAYER["compile"] < LAYER["plan"] and LAYER["report"] < LAYER["validate"]


def module_map() -> dict[str, set[str]]:
    """ARCHITECTURE.md's module map: part (`engine/`, `plan.py`) -> the modules its row lists."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(`[^|]+`)\s*\|([^|]*)\|", text, flags=re.MULTILINE)
    out: dict[str, set[str]] = {}
    for parts, modules in rows:
        for part in re.findall(r"`([^`]+)`", parts):
            out[part] = set(re.findall(r"`([a-z_0-9]+)`", modules))
    return out


def test_the_module_map_in_architecture_md_matches_the_code() -> None:
    mapped = module_map()
    for package in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        modules = {m.stem for m in package.glob("*.py") if m.stem != "__init__"}
        assert mapped.get(f"{package.name}/") == modules, f"ARCHITECTURE.md's row for {package.name}/"
    files = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py", "errors.py", "__version__.py",
                                                     "contract.py", "resources.py"}
    assert files <= set(mapped), f"top-level modules missing from ARCHITECTURE.md: {sorted(files - set(mapped))}"
    families = {p.name for p in (PACKAGE / "sql").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert mapped["sql/"] == families, "ARCHITECTURE.md's row for sql/ (the template families)"
