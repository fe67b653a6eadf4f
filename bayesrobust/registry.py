"""Tiny name → factory registries, so configs, the CLI and contract tests can enumerate things."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bayesrobust.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping from strings to factories, with a clear error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:Name"`` without importing it: the import happens on the first
        :meth:`get` (keeps heavy optional stacks such as GPyTorch out of every CLI start-up)."""
        self.register(name)(_Lazy(target))

    def get(self, name: str) -> T:
        try:
            obj = self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None
        if isinstance(obj, _Lazy):
            obj = self._items[name] = obj.load()
        return obj

    def names(self) -> list[str]:
        return sorted(self._items)

    def ordered(self) -> list[str]:
        """The names in the order they were registered (where the order means something: the suites)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_submodules(package: str) -> list[str]:
    """Import every module of ``package`` (each registers what it defines, one registry call per file),
    so adding an attack or a dataset is adding its file, not also editing an import list."""
    import importlib
    import pkgutil

    path = importlib.import_module(package).__path__
    names = [f"{package}.{info.name}" for info in pkgutil.iter_modules(path) if not info.name.startswith("_")]
    for name in names:
        importlib.import_module(name)
    return names


class _Lazy:
    def __init__(self, target: str) -> None:
        self.target = target

    def load(self):
        import importlib

        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)
