"""The house, read from its imports: no import circle anywhere, no module importing from a layer above its own, and no
module outside ``stages/`` naming a config (every config is known from the registry).

Layers, bottom up, as the data flows: foundations (records, images, answers, prompts, formats) -> readers and the
engine (``sources``, ``generation``) -> pure logic (``synthesis``, audits) -> settings and stages -> the ``datasets``
builder -> what builds, shows and publishes -> the command line. Imports inside functions count too.
"""

import ast
import re
from pathlib import Path

import lgt.stages
from lgt.sources import SOURCES

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dataset_builder"
# Where each part of the `lgt` import namespace lives (setup.cfg's package_dir).
FOLDERS = {"lgt": PACKAGE, "lgt.eval": ROOT / "eval"}
LAYERS = [
    ("lgt", "lgt.errors", "lgt.scene", "lgt.images", "lgt.answers", "lgt.prompts", "lgt.formats", "lgt.pools",
     "lgt.synthesis", "lgt.synthesis.grammar", "lgt.synthesis.generator", "lgt.frames", "lgt.training", "lgt.rewards"),
    ("lgt.sources", "lgt.generation"),
    ("lgt.synthesis.", "lgt.decontam", "lgt.audit", "lgt.trace_audit", "lgt.trace_stats"),
    ("lgt.settings", "lgt.stages"),
    ("lgt.builder",),
    (
        "lgt.build",
        "lgt.card",
        "lgt.explorer",
        "lgt.output",
        "lgt.hub",
        "lgt.merge",
        "lgt.cluster",
        "lgt.eval",
        "lgt.detection",
    ),
    ("lgt.cli",),
]  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for namespace, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = [namespace, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports() -> dict[str, set[str]]:
    """Each lgt module and the lgt modules it imports (``from . import x`` is module ``x`` when there is one)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        found = {module.removesuffix(".__init__") for module in found}
        graph[name] = {module for module in found if module in modules and module != name}
    return graph


def _layer(module: str) -> int:
    """The layer of a module: its own entry, else its package's (``lgt.synthesis.`` covers the synthesis modules)."""
    for position, layer in enumerate(LAYERS):
        if module in layer:
            return position
    for position, layer in enumerate(LAYERS):
        if any(entry.endswith(".") and module.startswith(entry) for entry in layer):
            return position
    parent = module.rpartition(".")[0]
    assert parent, f"{module} is in no layer: add it to LAYERS"
    return _layer(parent)


def test_no_import_circle():
    graph, state, stack = _imports(), {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dependency in sorted(graph[module]):
            assert state.get(dependency) != "open", f"import circle: {' -> '.join(stack + [dependency])}"
            if dependency not in state:
                visit(dependency)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{module} ({_layer(module)}) imports {dependency} ({_layer(dependency)})"
        for module, dependencies in _imports().items()
        for dependency in dependencies
        # a package's __init__ gathers its own modules
        if _layer(dependency) > _layer(module) and not dependency.startswith(module + ".")
    ]
    assert not upward, "\n".join(upward)


def test_no_module_outside_stages_names_a_config():
    """Configs are named by the registry only (the CLI names none: its defaults come from the registry too). A
    source kind or a stage family spelled like a config (``scenes``) is another idea, not a config name."""
    other_ideas = set(SOURCES) | {stage.family for stage in lgt.stages.STAGES.values()}
    configs = [name for name in lgt.stages.STAGES if name not in other_ideas]
    names = re.compile("[\"'](" + "|".join(map(re.escape, configs)) + ")[\"']")
    named = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if "stages" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if names.search(line)
    ]
    assert not named, "\n".join(named)
