"""The package's shape, read from its imports: no import circles, and the layers import downwards only.

Every `import` counts, at the top of a module or inside a function (a lazy import is still a dependency),
except those under `if TYPE_CHECKING:`, which never run. Read with `ast`: nothing is imported."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgequant"


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


@lru_cache(maxsize=2)
def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the edgequant modules it imports (a name imported from a package is its submodule if one exists)."""
    files = {_module_name(p, package): p for p in package.rglob("*.py")}

    def owner(name: str) -> str:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names if a.name.split(".")[0] == package.name}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    module = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.split(".")[0] == package.name:
                    deps |= {owner(f"{module}.{a.name}") for a in node.names}
        graph[name] = deps - {name, ""}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _inside(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def importers(graph: dict[str, set[str]], layer: str) -> set[str]:
    """Modules outside `layer` that import something in it."""
    return {m for m, deps in graph.items() if not _inside(m, layer) and any(_inside(d, layer) for d in deps)}


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones(tmp_path):
    """The reader itself, on a package made for it: a circle through a function-level import is found; one
    through `if TYPE_CHECKING:` is not (it never runs)."""
    pkg = tmp_path / "edgequant"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from edgequant import b\n")
    (pkg / "b.py").write_text("def f():\n    from edgequant.a import thing\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgequant.sub import d\n")
    (pkg / "sub" / "d.py").write_text("from . import c\n")
    graph = import_graph(pkg)
    assert graph["edgequant.sub.d"] == {"edgequant.sub.c"}
    assert cycles(graph) == [["edgequant.a", "edgequant.b"]]


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_library_never_imports_the_cli():
    assert importers(import_graph(), "edgequant.cli") <= {"edgequant.__main__"}


def test_report_imports_no_build_stage():
    """The report renders results it is given; it never reaches into the stages that produced them."""
    stages = ["edgequant.pipeline", "edgequant.stages", "edgequant.api", "edgequant.quick", "edgequant.quantization.convert", "edgequant.measure.evaluate",
              "edgequant.measure.gates", "edgequant.quantization.mixed_precision", "edgequant.quantization.layer_error", "edgequant.int8_fixes",
              "edgequant.qat", "edgequant.model.source_model", "edgequant.model.onnx_import", "edgequant.quantization.onnx_export",
              "edgequant.output.registry", "edgequant.recipe"]
    graph = import_graph()
    reached = {d for m, deps in graph.items() if _inside(m, "edgequant.report") for d in deps}
    assert not {d for d in reached for s in stages if _inside(d, s)}


def test_only_the_entry_points_import_the_pipeline():
    """The stages never reach back into the orchestrator that calls them."""
    assert importers(import_graph(), "edgequant.pipeline") <= {"edgequant.api", "edgequant.cli.build", "edgequant.quick"}


def test_the_build_stages_are_wired_by_the_pipeline_alone():
    """Each stage of `build` is a module of edgequant.stages that the pipeline calls in order: no stage reaches
    up into the pipeline, the entry points or the CLI, and nothing but the pipeline calls the stages."""
    graph = import_graph()
    reached = {d for m, deps in graph.items() if _inside(m, "edgequant.stages") for d in deps}
    above = ["edgequant.pipeline", "edgequant.api", "edgequant.quick", "edgequant.cli", "edgequant.output.registry"]
    assert not {d for d in reached for a in above if _inside(d, a)}
    assert importers(graph, "edgequant.stages") <= {"edgequant.pipeline"}


def test_errors_import_nothing_of_edgequant():
    assert import_graph()["edgequant.errors"] == set()


def test_help_loads_neither_numpy_nor_pydantic_nor_tensorflow():
    """`edgequant --help` stays fast by construction: the CLI imports the library inside its commands
    (benchmarks/cli_startup.py measures the time; a test only checks what was loaded)."""
    import subprocess
    import sys

    script = ("import sys\nfrom edgequant.cli import main\ncode = main(['--help'])\n"
              "print(code, sorted(m for m in ('numpy', 'pydantic', 'tensorflow', 'yaml', 'matplotlib') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "0 []"


# The package's layers, lowest first. A module may import its own layer and the layers below it, never one
# above: the tree shows the architecture, and moving a module to the wrong layer fails here. Within a layer,
# packages may use each other (low-bit weights and QAT share their training and packing); module circles are
# still refused by test_no_import_circles.
LAYERS = [
    ("foundation: errors, the trust rule, optional extras", ["", "errors", "version", "lazy", "extras", "trust"]),
    ("the edgequant process: signals, temporary folders, logs, parallel work, caches", ["process"]),
    ("the recipe", ["recipe"]),
    ("data", ["data"]),
    ("models: source models, .tflite files, the LiteRT interpreter", ["model"]),
    ("a build's output: output directory, artifacts, registry", ["output"]),
    ("measuring: evaluation, comparison, gates", ["measure"]),
    ("the host benchmark and the simulated devices", ["bench", "devices"]),
    ("reports", ["report"]),
    ("quantization: conversion and its analyses", ["quantization"]),
    ("quantization methods", ["int8_fixes", "lowbit", "qat"]),
    ("the stages of a build", ["stages"]),
    ("entry points", ["pipeline", "shared_work", "recipe_check", "quick", "api"]),
    ("the Android app's side", ["android"]),
    ("the command line", ["cli", "__main__"]),
]


def _layer_of(module: str) -> int:
    group = module.split(".")[1] if "." in module else ""
    for i, (_, groups) in enumerate(LAYERS):
        if group in groups:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in {Path(__file__).name}")


def test_every_module_imports_only_its_own_layer_and_the_layers_below():
    graph = import_graph()
    upward = sorted(f"{m} ({LAYERS[_layer_of(m)][0]}) imports {d} ({LAYERS[_layer_of(d)][0]})"
                    for m, deps in graph.items() for d in deps if _layer_of(d) > _layer_of(m))
    assert upward == []


def test_the_package_root_holds_only_entry_points_and_foundation():
    """Everything else lives in the package of its layer."""
    root = {p.stem for p in PACKAGE.glob("*.py")}
    allowed = {g for i, (_, groups) in enumerate(LAYERS) if i in (0, len(LAYERS) - 1) or "api" in groups for g in groups}
    assert root - {"__init__"} <= allowed, root - allowed


def test_the_layer_contract_catches_an_upward_import(tmp_path):
    """The contract itself, on a package made for it: a model module importing a stage is reported."""
    pkg = tmp_path / "edgequant"
    for sub in ("model", "stages"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "stages" / "convert.py").write_text("from edgequant.model import runtime\n")
    (pkg / "model" / "runtime.py").write_text("def f():\n    from edgequant.stages import convert\n")
    graph = import_graph(pkg)
    assert [(m, d) for m, deps in graph.items() for d in deps if _layer_of(d) > _layer_of(m)] == \
        [("edgequant.model.runtime", "edgequant.stages.convert")]
