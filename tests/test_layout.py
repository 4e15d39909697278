"""The package's imports run one way, down the stages of docs/architecture.md, never in a circle.

Reads every module's imports with ``ast`` (nothing is imported), so it also runs as a script:
``python tests/test_layout.py`` prints each module's stage and any import that breaks the order.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "apparel"

# Lowest first; a module may import its own stage (without a circle) or any stage below it.
# The kinds (apparel/kinds/) sit in the middle: their pixel pipelines and data below, the training
# blocks they fit with below them, and above them everything that asks a kind (the contract,
# inference, the one training path, images, the shop, batches, the service, the CLI).
STAGES = {
    # 0: foundations, and the pixel-level pieces of each kind
    "apparel.errors": 0, "apparel.artifacts": 0, "apparel.config": 0, "apparel.taxonomy": 0,
    "apparel.images.decode": 0, "apparel.images.thumbnails": 0, "apparel.inference.inputs": 0,
    "apparel.kinds.fashion_mnist.data": 0, "apparel.kinds.fashion_mnist.pipeline": 0, "apparel.kinds.photo.pipeline": 0,
    # 1: the training core's blocks; the kind protocol; photo data sets
    "apparel.backbones": 1, "apparel.training.models": 1, "apparel.training.optimization": 1,
    "apparel.training.runs": 1, "apparel.training.scores": 1, "apparel.kinds.base": 1, "apparel.kinds.photo.data": 1,
    # 2: the kinds (each kind's object, fitting, measuring) and the contract that finds them
    "apparel.kinds": 2, "apparel.contract": 2,
    # 3 and up: what asks the kind
    "apparel.inference": 3, "apparel.attributes": 3,
    "apparel.training": 4, "apparel.store": 4,
    "apparel.images": 5,
    # The store model's artefact reads its calibration photos as the commands do (images.sources).
    "apparel.shop": 6, "apparel.bench": 6, "apparel.batch": 6, "apparel.desk": 6, "apparel.store.artefact": 6,
    "apparel.serve": 7,
    "apparel.flags": 8, "apparel.cli": 8, "apparel.__main__": 8, "apparel.store.__main__": 8, "apparel": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int:
    """The stage of the longest prefix of ``module`` named in STAGES."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in STAGES:
            return STAGES[".".join(parts[:end])]
    raise KeyError(f"{module} has no stage in STAGES; add it (and to docs/architecture.md)")


def package_imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, anywhere in the file (``from apparel.x import y``
    counts ``apparel.x.y`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("apparel"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("apparel"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: package_imports(path, set(paths)) - {name} for name, path in paths.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} (stage {stage(module)}) imports {target} (stage {stage(target)})"
            for module, targets in sorted(graph.items()) for target in sorted(targets)
            if stage(target) > stage(module) and not module.startswith(target + ".") and target != "apparel"]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each found once from its first module (depth-first search)."""
    found, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_no_import_runs_up_a_stage():
    assert upward_imports(import_graph()) == []


def test_no_import_circle():
    assert cycles(import_graph()) == []


if __name__ == "__main__":
    graph = import_graph()
    for module in sorted(graph, key=lambda name: (stage(name), name)):
        print(f"{stage(module)}  {module}")
    problems = upward_imports(graph) + [" → ".join(cycle) for cycle in cycles(graph)]
    print("\n".join(problems) or "no upward import, no circle")
    sys.exit(1 if problems else 0)
