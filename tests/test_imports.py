"""The package's import graph: no cycle, and every module importable on its own.

The graph is read from the source (every ``import``, function-level ones included, since a cycle hidden
inside a function is still a cycle; imports under ``if TYPE_CHECKING:`` never run and are left out).
Each module is then imported on its own, leaves first, in a process that holds no module of the package:
a forked child of an interpreter that has imported only the third-party libraries (torch's import is
most of an interpreter's start-up, and none of ours is loaded yet)."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "bayesrobust"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def runtime_imports(path: Path, package: str) -> list[str]:
    """The absolute names every import statement that can run brings in: ``import a.b`` → ``a.b``,
    ``from a import b`` → ``a.b`` (a submodule, or a name of module ``a``)."""
    tree = ast.parse(path.read_text())
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            hidden.update(id(inner) for branch in node.body for inner in ast.walk(branch))
    found = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def import_graph() -> tuple[dict[str, set[str]], set[str]]:
    """Module → the package modules it imports, and the third-party top-level packages imported anywhere."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    external: set[str] = set()
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in runtime_imports(path, package):
            if not target.startswith("bayesrobust"):
                external.add(target.split(".")[0])
                continue
            while target not in mods:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target != name:
                graph[name].add(target)
    return graph, external - {"__future__", ""}


def test_the_package_has_no_import_cycle():
    graph, _ = import_graph()
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise AssertionError(f"import cycle: {cycle} (move the shared piece into a leaf module)") from None
    assert order[0] in graph and len(order) == len(graph)


def test_every_module_imports_on_its_own_in_dependency_order():
    graph, external = import_graph()
    order = list(TopologicalSorter(graph).static_order())
    driver = f"""
import importlib, os, sys, traceback
for lib in {sorted(external)!r}:
    try:
        importlib.import_module(lib)
    except Exception:
        pass  # an optional extra (ray): the module that needs it is judged on its own
assert not any(m == "bayesrobust" or m.startswith("bayesrobust.") for m in sys.modules)
for name in {order!r}:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        print("FAILED", name, flush=True)
        sys.exit(1)
print("imported", len({order!r}))
"""
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"imported {len(order)}" in proc.stdout


def test_the_error_types_import_without_torch():
    """Code that only catches our errors (a wrapper script, a config checker) does not pay for torch: the
    package root loads its public names on first use. Checked in a fresh interpreter."""
    code = "import sys, bayesrobust.errors; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('bayesrobust')))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "['bayesrobust', 'bayesrobust.errors']"


def test_the_package_root_still_offers_its_names():
    import bayesrobust

    assert set(bayesrobust.__all__) <= set(dir(bayesrobust))
    assert all(getattr(bayesrobust, name) is not None for name in bayesrobust.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bayesrobust.nothing  # noqa: B018
