"""The attack suite's configuration: its ``[attack]`` table — the suite's own settings and runs, plus one
optional table per registered analysis (``analysis/``: each brings its own) — and the checks the types
alone cannot express (every attack of the config built once, typed parameters, reserved run names)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import TYPE_CHECKING, Optional

from bayesrobust.analysis import analyses
from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.errors import ConfigError

if TYPE_CHECKING:
    from bayesrobust.config import ExperimentConfig


@dataclass(frozen=True)
class AttackRunSection(AttackSpec):
    """One attack applied to every model (or those listed)."""

    models: tuple[str, ...] = ()  # default: every model
    limit: int = 0  # 0: the suite's limit


@dataclass(frozen=True)
class AttackSuiteSettings:
    """The attack suite's own settings and its named attack runs."""

    limit: int = 1000  # test examples attacked (stratified, seeded)
    batch_size: int = 250
    eval_samples: int = 50  # MC draws judging success and uncertainty on adversarial examples
    eot_samples: int = 1  # dropout masks averaged per attack gradient
    adaptive: bool = True  # on stochastic models, also run every attack in its adaptive form
    adaptive_eot_samples: int = 10  # masks per gradient in the adaptive form
    adaptive_kappa: float = 5.0  # C&W confidence margin (logits) in the adaptive form
    adaptive_margin: float = 1.0  # BIM-A's stopping margin (nats of log-probability) in the adaptive form
    runs: Mapping[str, AttackRunSection] = field(default_factory=dict)


AttackSection = make_dataclass(
    "AttackSection", [(name, Optional[a.section], None) for name, a in analyses().items()],  # noqa: UP045 (a runtime type)
    bases=(AttackSuiteSettings,), frozen=True,
    namespace={"__doc__": "The attack suite's [attack] table: its settings and runs, and a table per configured analysis.",
               "__module__": __name__,
               "__renamed__": {a.renamed_from: name for name, a in analyses().items() if a.renamed_from}})


RESERVED_RUN_NAMES = ("clean", "worst_case")


def validate_attack(config: ExperimentConfig) -> None:

    a = config.suites["attack"]
    for key in ("limit", "batch_size", "eval_samples", "eot_samples", "adaptive_eot_samples"):
        if getattr(a, key) < 1:
            raise ConfigError(f"attack.{key} must be >= 1")
    for key in ("adaptive_kappa", "adaptive_margin"):
        if getattr(a, key) < 0:
            raise ConfigError(f"attack.{key} must be >= 0, got {getattr(a, key)}")
    for name in a.runs:
        if name in RESERVED_RUN_NAMES or "@" in name:
            raise ConfigError(f"attack.runs.{name}: the names {', '.join(RESERVED_RUN_NAMES)} and names with '@' are "
                              "reserved for the suite's own rows; rename the run")
    for where, spec in {f"attack.runs.{n}": r for n, r in a.runs.items()}.items():
        spec.check(where)
    for name, r in a.runs.items():
        unknown = sorted(set(r.models) - set(config.models))
        if unknown:
            raise ConfigError(f"attack.runs.{name}.models: unknown model {unknown[0]!r}")
    for name, analysis in analyses().items():
        configured = getattr(a, name)
        if configured is not None and analysis.validate is not None:
            analysis.validate(config, configured, f"attack.{name}")
