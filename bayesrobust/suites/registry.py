"""Suites by config table name, in the order a run executes them. A suite declares everything about
itself here, in one place: the dataclass of its table, a validation run with the config before any work,
``run(run, models, data, section, seed) -> metrics``, the report sections that show its results (in
order; the report's own registry holds their code under these names) and the metric keys it writes (glob
patterns; a test checks every key a run writes against them). Adding a suite is one entry here; the TOML
codec is ``schema.py``'s and the core tables ``config.py``'s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayesrobust.registry import Registry
from bayesrobust.suites.attack import run_attack_suite
from bayesrobust.suites.attack_config import AttackSection, validate_attack
from bayesrobust.suites.calibration import CalibrationSection, run_calibration, validate_calibration
from bayesrobust.suites.detection import DetectionSection, run_detection, validate_detection
from bayesrobust.suites.evaluation import EvaluationSection, run_evaluation, validate_evaluation


@dataclass(frozen=True)
class Suite:
    section: type  # the frozen dataclass of the suite's [table]
    run: Callable[..., dict[str, float]]  # (run_dir, models, data, section, seed) -> metrics
    validate: Callable[[Any], None]  # (config) -> None; raises ConfigError naming the dotted key
    report_sections: tuple[str, ...] = ()  # names in report/…_sections.py, in the report's order
    metric_keys: tuple[str, ...] = ()  # glob patterns of the metrics.json keys the suite writes


SUITES: Registry[Suite] = Registry("suite")
SUITES.add("evaluation", Suite(EvaluationSection, run_evaluation, validate_evaluation, ("evaluation",),
                               ("clean/*", "shift/*", "rotate/*", "translate/*")))
SUITES.add("calibration", Suite(CalibrationSection, run_calibration, validate_calibration, ("calibration",),
                                ("calib/*", "calib_shift/*", "calib_paired/*", "conformal/*", "conformal_adv/*", "logistic/*")))
SUITES.add("attack", Suite(AttackSection, run_attack_suite, validate_attack,
                           ("attacks", "masking", "robustness-curve", "uncertainty-aware", "lacok", "papernot", "sweep", "transfer", "choi", "kos"),
                           ("adv/*", "masking/*", "hclu/*", "lacok/*", "papernot/*", "sweep/*", "crossmodel/*", "choi/*", "kos/*")))
SUITES.add("detection", Suite(DetectionSection, run_detection, validate_detection, ("detection",), ("detect/*",)))

REPORT_ORDER = ("summary", "models", *(s for name in SUITES.ordered() for s in SUITES.get(name).report_sections))
"""Every report section in the report's order: the summary and the models table, then each suite's, suite
by suite."""
