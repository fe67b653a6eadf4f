"""Suites by config section name: each is ``suite(run, models, data, section, seed) -> metrics``."""

from __future__ import annotations

from bayesrobust.registry import Registry
from bayesrobust.suites.attack import run_attack_suite
from bayesrobust.suites.evaluation import run_evaluation

SUITES = Registry("suite")
SUITES.add("evaluation", run_evaluation)
SUITES.add("attack", run_attack_suite)
