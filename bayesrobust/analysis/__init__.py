"""The attack suite's paper analyses, one module each, found by discovery.

An analysis module holds everything about itself: its config table (``[attack.<name>]``, a frozen
dataclass), the checks the types cannot express, ``run`` (the computation, written through the suite's
resumable units), its metric keys, and its report section with its figures. It registers one
:class:`Analysis` under the name of its table::

    ANALYSES.add("lacok", Analysis(LacokSection, run, section, metric_keys=(LACOK,), order=40))

and the suite's ``AttackSection`` gains the table, the suite runs it and the report shows it: adding an
analysis is adding its module (and its tests and docs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bayesrobust.registry import Registry


@dataclass(frozen=True)
class Analysis:
    section: type  # the frozen dataclass of its [attack.<name>] table
    run: Callable[..., dict | None]  # (ctx: AttackContext, cfg) -> its report metadata (JSON-plain), None: nothing ran
    report: Callable[..., Any]  # (files: AttackFiles, meta) -> report Section | None
    metric_keys: tuple = ()  # Key families of the metrics.json keys it writes
    validate: Callable[..., None] | None = None  # (config, cfg, where) -> None; raises ConfigError naming the key
    order: int = 0  # its place in the suite's run and in the report
    renamed_from: str = ""  # an old table name, refused with a message naming this one
    tiny: Mapping[str, str] = field(default_factory=dict)  # settings (TOML literals) that make it run in seconds in tests


ANALYSES: Registry[Analysis] = Registry("analysis", package="bayesrobust.analysis")


def analyses() -> dict[str, Analysis]:
    """Every registered analysis, in its order."""
    return dict(sorted(ANALYSES.load_all().items(), key=lambda item: item[1].order))


def check_model_name(config, cfg, key: str, where: str) -> None:
    """An analysis table's optional model name (``model``, ``judge``, ``reference``) names a model of the
    config, or is empty."""
    from bayesrobust.errors import ConfigError

    name = getattr(cfg, key)
    if name and name not in config.models:
        raise ConfigError(f"{where}.{key}: unknown model {name!r}")


def one_per_class(labels: torch.Tensor, count: int = 8) -> torch.Tensor:
    """Indices of the first example of each class, in class order, at most ``count`` of them
    (so figures show different digits even when a subset is sorted by label)."""
    first = [torch.nonzero(labels == c).flatten()[0] for c in range(int(labels.max()) + 1) if (labels == c).any()]
    return torch.stack(first)[:count]
