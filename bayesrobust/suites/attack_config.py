"""The attack suite's configuration: its ``[attack]`` table and the checks the types alone cannot
express (every attack of the config built once, typed parameters, targeted/untargeted fit, reserved
run names). Registered with the suite in ``suites/registry.py``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.errors import ConfigError
from bayesrobust.models.families import reconstructing_models

if TYPE_CHECKING:
    from bayesrobust.config import ExperimentConfig


@dataclass(frozen=True)
class AttackRunSection(AttackSpec):
    """One attack applied to every model (or those listed)."""

    models: tuple[str, ...] = ()  # default: every model
    limit: int = 0  # 0: the suite's limit


@dataclass(frozen=True)
class LacokSection:
    """Lacok (2016) Table 1: error and confidence on clean / FGSM ε / sign noise ε."""

    fgsm_eps: tuple[float, ...] = (0.10, 0.25)
    noise_eps: tuple[float, ...] = (0.25,)
    unclipped: bool = False  # also Lacok's own protocol: perturbed images are not clipped to [0, 1]


@dataclass(frozen=True)
class PapernotSection:
    """Papernot et al. (2016): JSMA source-target matrices, hardness and adversarial distance."""

    model: str = ""  # default: the first model
    per_class: int = 10  # source images per class; each is attacked towards the 9 other classes
    theta: float = 1.0
    gamma: float = 0.145
    hardness_gammas: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.145)
    candidates: int = 64
    space: str = "logits"  # logits (JSMA-Z, the paper) | probs (JSMA-F)


@dataclass(frozen=True)
class LogitSweepSection:
    """Goodfellow et al. Figure 4: logits along x + ε·sign(∇ₓ CE) for ε in [−eps_max, eps_max]."""

    model: str = ""
    index: int = 0  # which attacked test example
    eps_max: float = 1.0
    steps: int = 41
    clip: bool = False  # the paper's inputs leave [0, 1] (rubbish-class regime)


@dataclass(frozen=True)
class TransferMatrixSection(AttackSpec):
    """Cross-model transfer (Szegedy Table 2 / Bradshaw): crafted on row model, error of column model."""

    noise_std: tuple[float, ...] = (0.1, 0.3)  # Gaussian-noise control rows


@dataclass(frozen=True)
class TriptychSection(AttackSpec):
    """Choi: original / perturbation / adversarial for `count` digits of class `source` → `target` (the
    targets are those; ``targets`` stays "none")."""

    attack: str = "targeted_l2"
    model: str = ""
    source: int = 2
    target: int = 6
    count: int = 10


def _kos_lams() -> Mapping[str, tuple[float, ...]]:
    return {"classifier": (0.1, 0.3, 1.0), "latent": (0.3, 1.0, 3.0), "vae": (1.0, 3.0, 10.0)}


@dataclass(frozen=True)
class KosSection:
    """Kos et al. (2017): the classifier, latent and VAE attacks on a VAE, source–target success
    matrices judged on the reconstruction, each loss over a sweep of λ (the first λ is the headline)."""

    model: str = ""  # a VAE of the config (default: the first one)
    judge: str = ""  # another model of the config that also classifies the reconstructions ("" = none)
    per_class: int = 10  # source images per class; each is attacked towards the 9 other classes
    losses: tuple[str, ...] = ("classifier", "latent", "vae")
    lams: Mapping[str, tuple[float, ...]] = field(default_factory=_kos_lams)  # per loss: weights of ‖x − x*‖₂
    steps: int = 200
    lr: float = 0.01

    def lams_of(self, loss: str) -> tuple[float, ...]:
        """The λ sweep of ``loss``: as configured, else the default sweep."""
        return tuple(self.lams[loss]) if loss in self.lams else _kos_lams()[loss]


@dataclass(frozen=True)
class UncertaintyAwareSection(AttackSpec):
    """Grosse et al.'s question: is there, within the budget, an adversarial example that is
    misclassified, confident (≥ ``confidence``) and no more uncertain than ``quantile`` of the
    model's clean validation digits? Run on every model."""

    attack: str = "bim"
    confidence: float = 0.9  # τ on the MC-mean confidence of the adversarial class
    quantile: float = 0.95  # the uncertainty cap: this quantile of the model's clean validation values
    uncertainty: str = "mi"  # mi | entropy
    eot_samples: int = 10  # masks per gradient (the uncertainty penalty needs several)
    uncertainty_weight: float = 10.0
    limit: int = 0  # 0: the suite's limit


@dataclass(frozen=True)
class MaskingSection:
    """``[attack.masking]``: the five gradient-masking checks (analysis/masking.py) on ``limit`` test
    digits at L∞ ``eps``."""

    eps: float = 0.3
    limit: int = 200  # test digits (stratified, seeded; 0: the suite's limit)
    steps: tuple[int, ...] = (10, 100)  # APGD-CE's steps, check (e); the most is the white-box attack of (a), (b), (d)
    queries: int = 1000  # Square's budget, check (b)
    square_margin: float = 0.05
    tolerance: float = 0.01
    eot_samples: int = 10  # draws per gradient on stochastic models
    reference: str = ""  # whose APGD examples are transferred, check (d) (default: the first deterministic model)


@dataclass(frozen=True)
class RobustnessCurveSection(AttackSpec):
    """``[attack.robustness_curve]``: robust accuracy against ε per norm for every model, with bootstrap
    intervals (analysis/robustness_curve.py). ``attack`` and ``params`` as in a run (ε and the norm are
    set per point); an empty grid leaves that norm out."""

    attack: str = "apgd"
    linf: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # MNIST's usual L∞ range; 0 = the clean digits
    l2: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # pixels in [0, 1] on 28 × 28: ε 2 is RobustBench-scale
    limit: int = 500  # test digits (stratified, seeded; 0: the suite's limit)
    eot_samples: int = 10  # draws per gradient on stochastic models
    resamples: int = 1000  # bootstrap resamples of the digits


@dataclass(frozen=True)
class AttackSection:
    """The attack suite: named attack runs plus the paper analyses that are configured."""

    limit: int = 1000  # test examples attacked (stratified, seeded)
    batch_size: int = 250
    eval_samples: int = 50  # MC draws judging success and uncertainty on adversarial examples
    eot_samples: int = 1  # dropout masks averaged per attack gradient
    adaptive: bool = True  # on stochastic models, also run every attack in its adaptive form
    adaptive_eot_samples: int = 10  # masks per gradient in the adaptive form
    adaptive_kappa: float = 5.0  # C&W confidence margin (logits) in the adaptive form
    adaptive_margin: float = 1.0  # BIM-A's stopping margin (nats of log-probability) in the adaptive form
    runs: Mapping[str, AttackRunSection] = field(default_factory=dict)
    uncertainty_aware: UncertaintyAwareSection | None = None
    lacok: LacokSection | None = None
    papernot: PapernotSection | None = None
    sweep: LogitSweepSection | None = None
    transfer: TransferMatrixSection | None = None
    triptych: TriptychSection | None = None
    kos: KosSection | None = None
    masking: MaskingSection | None = None  # gradient-masking checks per model (analysis/masking.py)
    robustness_curve: RobustnessCurveSection | None = None  # robust accuracy against ε (analysis/robustness_curve.py)


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
    specs = {f"attack.runs.{n}": r for n, r in a.runs.items()}
    if a.uncertainty_aware is not None:
        u = a.uncertainty_aware
        if not 0.0 < u.confidence <= 1.0 or not 0.0 < u.quantile <= 1.0:
            raise ConfigError("attack.uncertainty_aware: confidence and quantile must be in (0, 1]")
        if u.uncertainty not in ("mi", "entropy"):
            raise ConfigError(f"attack.uncertainty_aware.uncertainty must be mi or entropy, got {u.uncertainty!r}")
        if u.eot_samples < 1:
            raise ConfigError("attack.uncertainty_aware.eot_samples must be >= 1")
        specs["attack.uncertainty_aware"] = u
    if a.transfer is not None:
        specs["attack.transfer"] = a.transfer
    for where, spec in specs.items():
        spec.check(where)
    if a.triptych is not None:
        if a.triptych.targets != "none":
            raise ConfigError("attack.triptych.targets: the triptych's target is its `target` class; remove targets")
        a.triptych.check("attack.triptych", targeted=True)
    for name, r in a.runs.items():
        unknown = sorted(set(r.models) - set(config.models))
        if unknown:
            raise ConfigError(f"attack.runs.{name}.models: unknown model {unknown[0]!r}")
    for section in ("papernot", "sweep", "triptych"):
        sub = getattr(a, section)
        if sub is not None and sub.model and sub.model not in config.models:
            raise ConfigError(f"attack.{section}.model: unknown model {sub.model!r}")
    if a.kos is not None:
        check_kos(config, a.kos)
    if a.masking is not None:
        m = a.masking
        if not m.steps or any(int(s) < 1 for s in m.steps) or m.queries < 1 or m.eot_samples < 1 or m.limit < 0:
            raise ConfigError("attack.masking: steps (one or more), queries and eot_samples must be >= 1, limit >= 0")
        if not 0 < m.eps <= 1 or m.square_margin < 0 or m.tolerance < 0:
            raise ConfigError("attack.masking: eps must be in (0, 1], square_margin and tolerance >= 0")
        if m.reference and m.reference not in config.models:
            raise ConfigError(f"attack.masking.reference: unknown model {m.reference!r}")
    if a.robustness_curve is not None:
        check_robustness_curve(a.robustness_curve)
    if a.triptych is not None and a.triptych.source == a.triptych.target:
        raise ConfigError("attack.triptych: source and target must differ")


def check_robustness_curve(curve: RobustnessCurveSection) -> None:
    from bayesrobust.analysis.robustness_curve import grids, takes_norm

    where = "attack.robustness_curve"
    for key in ("eps", "norm"):
        if key in curve.params:
            raise ConfigError(f"{where}.params.{key}: set by the grid (linf = [...], l2 = [...]); remove it")
    if curve.targets != "none":
        raise ConfigError(f"{where}.targets: robust accuracy is untargeted; remove targets")
    if not grids(curve):
        raise ConfigError(f"{where}: give at least one ε grid (linf or l2)")
    for norm, grid in grids(curve).items():
        if any(not e >= 0 for e in grid) or len(set(grid)) < len(grid):
            raise ConfigError(f"{where}.{norm}: ε values must be distinct and >= 0, got {list(grid)}")
        if norm == "linf" and max(grid) > 1:
            raise ConfigError(f"{where}.linf: an L∞ ε above 1 is no constraint on [0, 1] pixels, got {max(grid)}")
    curve.check(where)
    if "l2" in grids(curve) and not takes_norm(curve.attack):
        raise ConfigError(f"{where}: {curve.attack} is L∞ only; use apgd, pgd, square or autoattack for an l2 grid, or set l2 = []")
    for key in ("limit", "eot_samples", "resamples"):
        if getattr(curve, key) < (0 if key == "limit" else 1):
            raise ConfigError(f"{where}.{key} must be >= {0 if key == 'limit' else 1}")


def check_kos(config: ExperimentConfig, kos: KosSection) -> None:
    from bayesrobust.attacks.kos import LOSSES

    vaes = reconstructing_models(config)
    if kos.model and kos.model not in vaes:
        raise ConfigError(f"attack.kos.model: {kos.model!r} is not a VAE of this config (VAEs: {', '.join(vaes) or 'none'})")
    if not vaes:
        raise ConfigError("attack.kos attacks a VAE: add a model with arch = 'vae'")
    if kos.judge and kos.judge not in config.models:
        raise ConfigError(f"attack.kos.judge: unknown model {kos.judge!r}")
    for loss in kos.losses:
        if loss not in LOSSES:
            raise ConfigError(f"attack.kos.losses: unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        lams = kos.lams_of(loss)
        if not lams or any(not lam >= 0 for lam in lams):
            raise ConfigError(f"attack.kos.lams.{loss}: give at least one weight >= 0")
    unknown = sorted(set(kos.lams) - set(LOSSES))
    if unknown:
        raise ConfigError(f"attack.kos.lams: unknown loss {unknown[0]!r}; known: {', '.join(LOSSES)}")
    for key in ("per_class", "steps"):
        if getattr(kos, key) < 1:
            raise ConfigError(f"attack.kos.{key} must be >= 1")
    if not kos.lr > 0:
        raise ConfigError(f"attack.kos.lr must be > 0, got {kos.lr}")
