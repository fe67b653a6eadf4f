"""Suites by config table name. A suite declares everything about itself in its own module, with one
``SUITES.add(name, Suite(...))``: the dataclass of its table, a validation run with the config before any
work, ``run(run, models, data, section, seed) -> metrics``, the report sections that show its results (in
order; the report's own registry holds their code under these names), the key families of the metrics it
writes (a test checks every key a run writes against them), its headline metrics (the report's summary,
``compare`` and ``sweep-report`` show those) and its place in a run. The TOML codec is ``schema.py``'s and
the core tables ``config.py``'s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayesrobust.keys import Key
from bayesrobust.registry import Registry


@dataclass(frozen=True)
class Headline:
    """A metric a suite puts forward: shown per model in the report's summary when ``model`` is its only
    field, and compared across runs by ``compare`` and ``sweep-report`` (every field free)."""

    label: str
    key: Key
    summary: bool = True  # a column of the report's summary (where ``model`` is the key's only field)

    @property
    def per_model(self) -> bool:
        return self.summary and self.key.fields == ("model",)


@dataclass(frozen=True)
class Suite:
    section: type  # the frozen dataclass of the suite's [table]
    run: Callable[..., dict[str, float]]  # (run_dir, models, data, section, seed) -> metrics
    validate: Callable[[Any], None]  # (config) -> None; raises ConfigError naming the dotted key
    report_sections: tuple[str, ...] = ()  # names in report/…_sections.py, in the report's order
    metric_keys: tuple[Key, ...] = ()  # the families of the metrics.json keys the suite writes
    headline: tuple[Headline, ...] = ()  # its headline metrics, in the order shown
    order: int = 0  # its place in a run and in the report


SUITES: Registry[Suite] = Registry("suite", package="bayesrobust.suites")  # each suite registers in its module


def suites() -> dict[str, Suite]:
    """Every suite, in the order a run executes them."""
    return dict(sorted(SUITES.load_all().items(), key=lambda item: item[1].order))


def report_order() -> tuple[str, ...]:
    """Every report section in the report's order: the summary and the models table, then each suite's,
    suite by suite."""
    return ("summary", "models", *(s for suite in suites().values() for s in suite.report_sections))


def headlines() -> list[Headline]:
    """Every suite's headline metrics, suite by suite."""
    return [h for suite in suites().values() for h in suite.headline]


def headline_patterns() -> tuple[str, ...]:
    """The headline metrics as globs (every field free): what ``compare`` and ``sweep-report`` show by default."""
    return tuple(h.key.glob() for h in headlines())
