"""A sweep's plan: the grid points × seeds of one experiment config, each an ordinary run folder.

The grid comes from the config's ``[sweep]`` table and from ``--grid KEY=v1,v2`` (the command line wins
for a key both give); every trial is the config with ``--set``-style overrides for its grid point and
``run.seed``, validated like any run before anything starts. The plan is written once as the sweep
folder's ``manifest.json``; a re-run with the same plan resumes it, a different plan is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from bayesrobust.config import SweepSection, load_config  # noqa: F401  (SweepSection: the [sweep] table)
from bayesrobust.errors import ConfigError
from bayesrobust.schema import tomllib

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Trial:
    name: str
    point: tuple[tuple[str, Any], ...]  # (dotted key, value) per grid dimension
    seed: int

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={toml_literal(value)}" for key, value in self.point] + [f"run.seed={self.seed}"]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "point": dict(self.point), "seed": self.seed, "overrides": self.overrides}


def toml_literal(value: Any) -> str:
    """``value`` as the TOML literal ``--set`` parses back to it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    raise ConfigError(f"sweep: cannot write {value!r} as a TOML value")


def split_values(text: str) -> list[str]:
    """``"1e-3,[1, 2],'a,b'"`` → the comma-separated items at the top level (not inside [] or quotes)."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items]


def parse_grid_option(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"models.mlp.train.l1=1e-3,1e-4"`` → ("models.mlp.train.l1", (0.001, 0.0001)); values are TOML
    literals, bare words strings."""
    if "=" not in text:
        raise ConfigError(f"--grid expects KEY=v1,v2,..., got {text!r}")
    key, raw = (part.strip() for part in text.split("=", 1))
    values = []
    for item in split_values(raw):
        if not item:
            raise ConfigError(f"--grid {text!r}: an empty value")
        try:
            values.append(tomllib.loads(f"v = {item}")["v"])
        except tomllib.TOMLDecodeError:
            values.append(item)
    if not key or not values:
        raise ConfigError(f"--grid {text!r}: give a key and at least one value")
    return key, tuple(values)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-4"`` → (0, 1, 2, 3, 4); ``"0,3,7"`` → (0, 3, 7)."""
    seeds: list[int] = []
    try:
        for part in split_values(text):
            if re.fullmatch(r"\d+-\d+", part):
                low, high = (int(v) for v in part.split("-"))
                if high < low:
                    raise ValueError
                seeds.extend(range(low, high + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds expects a range 0-4 or a list 0,1,2 of non-negative integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} repeats a seed")
    return tuple(seeds)


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that tells it from the others (``models.mlp.train.l1`` → ``l1``)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(1 for other in keys if other == suffix or other.endswith("." + suffix)) == 1:
                names[key] = suffix
                break
    return names


def _value_text(value: Any) -> str:
    text = toml_literal(value).strip('"')
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


def plan_trials(grid: Mapping[str, tuple[Any, ...]], seeds: tuple[int, ...]) -> list[Trial]:
    """Every grid point × seed, named ``l1=0.001,l2=0.0001,seed=0`` (short key names, safe characters)."""
    if not seeds:
        raise ConfigError("sweep: no seeds (give --seeds or [sweep].seeds)")
    keys = list(grid)
    for key in keys:
        if not grid[key]:
            raise ConfigError(f"sweep.grid.{key}: no values")
    short = short_names(keys)
    trials = []
    for values in product(*(grid[k] for k in keys)):
        point = tuple(zip(keys, values))
        label = ",".join(f"{short[k]}={_value_text(v)}" for k, v in point)
        for seed in seeds:
            trials.append(Trial(f"{label},seed={seed}" if label else f"seed={seed}", point, seed))
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise ConfigError("sweep: two grid points get the same folder name (values that differ only in "
                          "characters a folder name cannot hold); change the values")
    return trials


def validate_trials(config_path: str | Path, base_overrides: list[str], trials: list[Trial]) -> None:
    """Every trial's config is checked before any trial starts: a bad grid key or value fails now."""
    for trial in trials:
        try:
            load_config(config_path, [*base_overrides, *trial.overrides])
        except ConfigError as exc:
            raise ConfigError(f"sweep trial {trial.name}: {exc}") from None
