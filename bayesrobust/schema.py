"""The config schema's machinery, a leaf module: TOML in and out, frozen dataclasses built from tables
with every key and type checked (the error names the dotted key), keyword parameters checked against a
constructor's annotations, and the way back to plain dicts. It imports nothing of the package but its
errors, so the suites, the models and the config can all use it without an import cycle."""

from __future__ import annotations

import collections.abc
import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

from bayesrobust.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

__all__ = ["apply_overrides", "build", "coerce", "dump_toml", "parse_override", "refuse_unknown_keywords", "to_plain",
           "tomllib", "typed_params"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return build(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        return tuple(coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        inner = args[1] if len(args) == 2 else Any
        return types.MappingProxyType({str(k): coerce(v, inner, f"{where}.{k}") for k, v in value.items()})
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")  # a schema bug, not a user error


def build(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    for old, new in getattr(cls, "__renamed__", {}).items():  # a key that was renamed: say what to write now
        if old in data:
            raise ConfigError(f"config key {prefix}{old} was renamed to {prefix}{new}: write [{prefix}{new}] instead of "
                              f"[{prefix}{old}] (the settings inside are unchanged)")
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}; allowed in [{where or 'top level'}]: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = coerce(value, hints[name], key)
    return cls(**kwargs)


def to_plain(obj: Any) -> Any:
    """Dataclasses / mapping proxies / tuples → plain dicts and lists (for TOML and JSON); a dataclass
    with a ``__plain__()`` method is written as what that returns."""
    if hasattr(obj, "__plain__"):  # a dataclass that lays itself out differently (ExperimentConfig)
        return to_plain(obj.__plain__())
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def refuse_unknown_keywords(params: Mapping[str, Any], *constructors, what: str, ignore: tuple[str, ...] = ()) -> None:
    """A ConfigError naming the first of ``params`` that none of ``constructors`` takes (and what is
    allowed): the one check behind ``build_attack``, ``build_model`` and the registries' builders."""
    import inspect

    accepted = set().union(*(inspect.signature(c).parameters for c in constructors)) - {"self", *ignore}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} for {what}; allowed: {', '.join(sorted(accepted))}")


def typed_params(func, params: Mapping[str, Any], where: str, extra_hints: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check keyword ``params`` against the annotations of ``func`` (a constructor) like config
    sections are checked: each value must have the annotated type; the error names the dotted key,
    the expected type and the value given. Unknown names are left to the constructor's own check."""
    hints = {**(extra_hints or {}), **typing.get_type_hints(func)}
    return {key: coerce(value, hints.get(key, Any), f"{where}.{key}") for key, value in params.items()}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → (["a", "b"], 3). Values are TOML literals; bare words are strings."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set has an empty key in {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return raw


def dump_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for resolved configs (tables, arrays, strings, numbers, booleans)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{_key(k)} = {scalar(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def table(prefix: str, node: Mapping[str, Any]) -> None:
        simple = {k: v for k, v in node.items() if not isinstance(v, Mapping) or not v or k == "params"}
        nested = {k: v for k, v in node.items() if k not in simple}
        if prefix and (simple or not nested):
            lines.append(f"\n[{prefix}]")
        for k, v in simple.items():
            lines.append(f"{_key(k)} = {scalar(v)}")
        for k, v in nested.items():
            table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)

    table("", data)
    return "\n".join(lines).lstrip() + "\n"


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else f'"{k}"'
