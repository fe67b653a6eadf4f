"""Suites by config table name. A suite brings everything it needs: the dataclass of its table, a
validation run with the config before any work, and ``run(run, models, data, section, seed) ->
metrics``. Adding a suite is one entry here; ``config.py`` only keeps the core tables and generic checks, and
the TOML codec and typed builder are ``schema.py``'s."""

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


SUITES: Registry[Suite] = Registry("suite")
SUITES.add("evaluation", Suite(EvaluationSection, run_evaluation, validate_evaluation))
SUITES.add("attack", Suite(AttackSection, run_attack_suite, validate_attack))
SUITES.add("detection", Suite(DetectionSection, run_detection, validate_detection))
SUITES.add("calibration", Suite(CalibrationSection, run_calibration, validate_calibration))
