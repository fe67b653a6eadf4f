"""Name → thing registries, so configs, the CLI and contract tests can enumerate what exists.

There is one way to register anything (a model family, an attack, a dataset, a detector, an analysis, a
suite, a report section): in the thing's own module, with a literal name,

    @ATTACKS.register("fgsm")           # a class or function
    DATASETS.add("mnist", spec)         # an object

and the registry of that package finds it. Looking a name up the first time reads the package's module
sources (nothing is imported) for those literal registrations, and imports a module only when one of its
names is asked for: a new thing is one new file, and heavy stacks (GPyTorch, Pyro) load only when used."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from bayesrobust.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping from strings to things, with a clear error for unknown names. With ``package``,
    every module of that package that registers a literal name is a source of entries (read lazily)."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._items: dict[str, T | _Pending] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and not isinstance(self._items[name], _Pending):
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def _discover(self) -> None:
        if self.package is not None:
            package, self.package = self.package, None  # once, and before importing anything
            for module, names in declared_names(package).items():
                for name in names:
                    self._items.setdefault(name, _Pending(module))

    def get(self, name: str) -> T:
        self._discover()
        try:
            obj = self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None
        if isinstance(obj, _Pending):
            importlib.import_module(obj.module)  # its registration replaces the placeholder
            obj = self._items[name]
            if isinstance(obj, _Pending):
                raise RuntimeError(f"{obj.module} names {self.kind} {name!r} but did not register it")
        return obj

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def load_all(self) -> dict[str, T]:
        """Every entry, imported, in registration order (modules in file-name order)."""
        return {name: self.get(name) for name in self.ordered()}

    def ordered(self) -> list[str]:
        """The names in the order they were declared: module by module (file names sorted), then as
        each module registers them."""
        self._discover()
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


class _Pending:
    """A name declared by a module that has not been imported yet."""

    def __init__(self, module: str) -> None:
        self.module = module


def declared_names(package: str) -> dict[str, list[str]]:
    """``{module: [names]}``: the literal names each module of ``package`` registers at its top level
    (``@X.register("name")`` decorators and ``X.add("name", …)`` / ``X.register("name")`` calls), read
    from the sources without importing them. Modules whose names start with ``_`` are skipped."""
    spec = importlib.util.find_spec(package)
    out: dict[str, list[str]] = {}
    for info in sorted(pkgutil.iter_modules(spec.submodule_search_locations), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        path = Path(info.module_finder.path) / f"{info.name}.py"
        names = [n for node in ast.parse(path.read_text(encoding="utf-8")).body for n in _registered(node)]
        if names:
            out[f"{package}.{info.name}"] = names
    return out


def _registered(node: ast.stmt) -> list[str]:
    calls = [d for d in getattr(node, "decorator_list", ())] if isinstance(node, (ast.ClassDef, ast.FunctionDef)) else []
    if isinstance(node, ast.Expr):
        calls = [node.value.func if isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Call) else node.value]
    return [c.args[0].value for c in calls
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr in ("register", "add")
            and c.args and isinstance(c.args[0], ast.Constant) and isinstance(c.args[0].value, str)]
