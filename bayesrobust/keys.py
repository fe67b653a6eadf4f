"""Result keys as typed patterns. A suite or analysis declares each family of its metric and array keys
once, as a :class:`Key` such as ``Key("adv/{run}/{model}/{measure}")``, and every reader goes through
the same object: it formats a key, parses one back into its fields and globs a family. A typo in a field
name is then an error where the key is built, not a missing cell in a report."""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any


class Key:
    """A ``/``-separated key pattern with named fields, e.g. ``"clean/{model}/{measure}"``. Field values
    never hold ``/``; literal parts are matched exactly."""

    def __init__(self, pattern: str) -> None:
        parts = list(string.Formatter().parse(pattern))
        self.pattern = pattern
        self.fields = tuple(name for _, name, _, _ in parts if name)
        if len(set(self.fields)) != len(self.fields) or any(spec or conv for _, _, spec, conv in parts):
            raise ValueError(f"key pattern {pattern!r}: fields must be distinct and plain ({{name}})")
        regex = "".join(re.escape(text) + (f"(?P<{name}>[^/]+)" if name else "") for text, name, _, _ in parts)
        self._regex = re.compile(regex + r"\Z")

    def __repr__(self) -> str:
        return f"Key({self.pattern!r})"

    def __call__(self, **values: Any) -> str:
        """The key with every field filled: ``ADV(run="fgsm", model="lenet", measure="l2")``. A float is
        written as ``:g`` does (``0.1``, not ``0.10000000000000001``)."""
        missing = [f for f in self.fields if f not in values]
        extra = sorted(set(values) - set(self.fields))
        if missing or extra:
            raise KeyError(f"{self.pattern}: {'missing field ' + missing[0] if missing else 'no field ' + extra[0]}")
        return self.pattern.format(**{k: _text(k, v, self.pattern) for k, v in values.items()})

    format = __call__

    def parse(self, key: str) -> dict[str, str] | None:
        """The fields of ``key`` when it belongs to this family, else None."""
        match = self._regex.match(key)
        return match.groupdict() if match else None

    def matches(self, key: str) -> bool:
        return self._regex.match(key) is not None

    def glob(self, **values: Any) -> str:
        """A glob (``fnmatch``) of the keys with the given fields fixed and the others free."""
        free = {f: "*" for f in self.fields if f not in values}
        return self.pattern.format(**free, **{k: _text(k, v, self.pattern) for k, v in values.items()})

    def select(self, keys: Iterable[str], **values: Any) -> list[tuple[str, dict[str, str]]]:
        """(key, fields) of every key of ``keys`` in this family whose fields equal ``values``, in order."""
        fixed = {k: _text(k, v, self.pattern) for k, v in values.items()}
        out = []
        for key in keys:
            fields = self.parse(key)
            if fields is not None and all(fields[k] == v for k, v in fixed.items()):
                out.append((key, fields))
        return out

    def get(self, mapping: Mapping[str, Any], default: Any = None, **values: Any) -> Any:
        """``mapping[self(**values)]``, or ``default`` when the run did not write it."""
        return mapping.get(self(**values), default)


def _text(field: str, value: Any, pattern: str) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if "/" in text or not text:
        raise ValueError(f"{pattern}: field {field} may not be empty or hold '/', got {text!r}")
    return text


def owned_by(key: str, families: Iterable[Key | str]) -> bool:
    """Whether ``key`` belongs to one of ``families`` (a :class:`Key`, or a glob string)."""
    return any(f.matches(key) if isinstance(f, Key) else fnmatch.fnmatchcase(key, f) for f in families)
