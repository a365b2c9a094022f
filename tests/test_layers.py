"""The package layers (docs/architecture.md): imports only go down, no circles, no private names across packages.

Every module is ranked by the package it lives in, so a new module is ranked the moment it is added; a new
top-level package must be given a layer here (the test names it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import danlu

PACKAGE = Path(danlu.__file__).parent

# bottom to top; a module may import its own layer and the ones below
LAYERS = [
    ("core", {"errors", "log", "safe_yaml", "printable", "outputs", "runtime", "metrics", "tasks", "schema", "recipe",
              "recipes", "recipe_recommend"}),
    ("data, models, runs, plots", {"data", "models", "runs", "plots"}),
    ("inference", {"inference", "predictor", "prepare"}),
    # recommend: below the api, which dispatches recommendation recipes to it (as RELAYOUT.md's map has it)
    ("training, evaluation, export", {"training", "evaluation", "export", "recommend"}),
    ("the api", {"api"}),
    ("the production features", {"tuning", "explanations", "compress", "federated", "scratch", "autorecipe"}),
    ("serve, studio, cli", {"serve", "studio", "cli", "__main__"}),
]
RANK = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}
# models/specs.py is the recipe's model section: each family declares its options beside its builder, torch-free,
# and the recipe validates with them; so it is ranked with the recipe, and may import only the core
RANK["models.specs"] = 0
RANK["models.recommend_specs"] = 0  # the recommendation models' options, read by models/specs.py the same way


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _unit(module: str) -> str:
    """The ranked unit a module belongs to: danlu.training.loop → training; danlu.api → api."""
    parts = module.split(".")
    if ".".join(parts[1:3]) in RANK:
        return ".".join(parts[1:3])
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, list[tuple[str, list[str]]]]:
    """Every danlu module → (imported module, imported names); lazy and TYPE_CHECKING imports included."""
    graph: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found: list[tuple[str, list[str]]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "danlu" \
                    and node.level == 0:
                found.append((node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found.extend((a.name, []) for a in node.names if a.name.split(".")[0] == "danlu")
        graph[_module_name(path)] = found
    return graph


def _module_edges() -> dict[str, set[str]]:
    graph = _imports()
    modules = set(graph)
    edges: dict[str, set[str]] = {}
    for m, imports in graph.items():
        deps: set[str] = set()
        for mod, names in imports:
            if mod == "danlu":  # `from danlu import x`: x is a submodule or a lazy public attribute
                deps.update(f"danlu.{n}" for n in names if f"danlu.{n}" in modules)
                continue
            deps.update(f"{mod}.{n}" for n in names if f"{mod}.{n}" in modules)
            if mod in modules:
                deps.add(mod)
        edges[m] = {d for d in deps if d != m and not m.startswith(d + ".")}  # a package's own __init__: no edge
    return edges


def test_every_module_has_a_layer():
    unranked = sorted({_unit(m) for m in _imports()} - set(RANK) - {""})
    assert not unranked, f"give these top-level modules or packages a layer in tests/test_layers.py: {unranked}"


def test_no_module_imports_a_layer_above_it():
    wrong = []
    for m, deps in _module_edges().items():
        for d in deps:
            if _unit(m) and _unit(d) and RANK[_unit(d)] > RANK[_unit(m)]:
                wrong.append(f"{m} ({LAYERS[RANK[_unit(m)]][0]}) imports {d} ({LAYERS[RANK[_unit(d)]][0]})")
    assert not wrong, "upward imports:\n" + "\n".join(sorted(wrong))


def test_the_import_graph_has_no_circle():
    """Between modules, counting imports for type hints too: a circle means two modules are one job."""
    graph = _module_edges()
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                circles.append(" → ".join([*path[path.index(d):], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_private_name_is_imported_across_packages():
    wrong = []
    for m, imports in _imports().items():
        for mod, names in imports:
            if _unit(mod) == _unit(m):
                continue
            wrong.extend(f"{m} imports {mod}.{n}" for n in names if n.startswith("_") and n != "__version__")
    assert not wrong, "private names used across packages (make them public or move the code):\n" + "\n".join(wrong)


def test_inference_knows_nothing_of_training_or_the_api():
    graph = _module_edges()
    for low in ("danlu.inference", "danlu.predictor", "danlu.evaluation", "danlu.export"):
        above = {d for d in graph[low] if _unit(d) in {"training", "api", "tuning"}}
        assert not above, f"{low} imports {sorted(above)}"
