"""Any suite on models in memory, without a TOML file: :func:`run_suite`.

A researcher with a wrapped network (``bayesrobust.wrap``) or a model built in Python runs the same code the
CLI runs: the suite's table is checked as a config's would be (unknown keys and wrong types are named), the
suite writes its metrics, arrays and resumable units into a run folder, and its report sections — tables and
matplotlib figures — are built from those files::

    from bayesrobust import run_suite, wrap
    result = run_suite("attack", {"mine": wrap(net)}, train, test,
                       settings={"limit": 200, "runs": {"fgsm": {"attack": "fgsm", "params": {"eps": 0.1}}}})
    result.metrics["adv/fgsm/mine/success_rate"]; result.figures["attack_examples_fgsm"]
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesrobust.errors import ConfigError


@dataclass
class SuiteResult:
    """What one suite wrote and shows."""

    metrics: dict[str, float]  # its metrics.json entries
    arrays: dict[str, dict[str, np.ndarray]]  # arrays/<file>.npz by file name ("attack", "calibration", …)
    sections: list  # its report sections (report.sections.Section: title, text, tables, figures)
    run: Any  # the RunDir it wrote into (pass ``out`` to keep it somewhere of your choosing)

    @property
    def figures(self) -> dict[str, Any]:
        """Every figure of its report sections by name (matplotlib ``Figure``)."""
        return {name: fig for s in self.sections for name, fig, _ in s.figures}

    @property
    def tables(self) -> dict[str, Any]:
        """Every table of its report sections by caption (``Table``: headers and rows of text)."""
        return {t.caption: t for s in self.sections for t in s.tables}


def run_suite(suite: str, models: Mapping[str, Any], train, test, *, val=None, shifted: Mapping[str, Any] | None = None,
              settings: Mapping[str, Any] | None = None, seed: int = 0, out: str | Path | None = None) -> SuiteResult:
    """Run the registered ``suite`` ("evaluation", "calibration", "attack", "detection") on ``models``
    (name → a ``BayesianClassifier``, e.g. from ``wrap``) with its table ``settings`` (as the config's
    ``[suite]`` table would hold them; omitted keys take their defaults). ``train``, ``test`` and ``val``
    are ``Dataset``s (``load_dataset``, ``Dataset.subset``); ``val`` is where suites fit and choose things
    (thresholds, calibrators, caps), never ``test``; ``shifted`` maps a name to more test sets. The folder
    ``out`` (a new folder; default: a temporary one) receives what the suite writes, as a run would. The same
    ``seed`` gives the same numbers."""
    from bayesrobust.config import DataSection, ExperimentConfig, ModelSection
    from bayesrobust.experiment import ExperimentData, model_card
    from bayesrobust.models.base import BayesianClassifier
    from bayesrobust.report.build import built_sections
    from bayesrobust.report.sections import SECTIONS
    from bayesrobust.runs import RunDir
    from bayesrobust.schema import build
    from bayesrobust.suites.registry import SUITES

    spec = SUITES.get(suite)
    not_models = [n for n, m in models.items() if not isinstance(m, BayesianClassifier)]
    if not models or not_models:
        raise ConfigError(f"run_suite takes models as name → BayesianClassifier; {not_models[0] if not_models else 'none'} "
                          "is not one (wrap a network first: bayesrobust.wrap(net))")
    section = build(spec.section, dict(settings or {}), suite)
    config = ExperimentConfig(data=DataSection(val_fraction=0.1 if val is not None else 0.0),
                              models={n: ModelSection(arch=m.arch, mode=m.mode) for n, m in models.items()},
                              suites={suite: section})
    spec.validate(config)
    run = RunDir.create(Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"bayesrobust-{suite}-")) / "run")
    run.write_json("models.json", [{"name": n, **model_card(m, config.models[n], len(train))} for n, m in models.items()])
    try:
        run.update_metrics(spec.run(run, dict(models), ExperimentData(train, val, test, dict(shifted or {})), section, seed))
    except BaseException as exc:
        run.mark_failed(exc)
        raise
    run.finish()
    sections = [s for name in spec.report_sections for s in built_sections(SECTIONS.get(name), run, name)]
    arrays = {p.stem: run.load_arrays(f"arrays/{p.name}") for p in sorted(run.file("arrays").glob("*.npz"))}
    return SuiteResult(run.metrics(), arrays, sections, run)
