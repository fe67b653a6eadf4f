"""Attacks: one per module, each ``attack(model, x, y, target=None) -> AttackResult``."""

from bayesrobust.attacks import bim, cw_l2, fgsm, jsma, lbfgs, sign_noise, targeted_l2  # noqa: F401
from bayesrobust.attacks.base import ATTACKS, Attack, AttackResult, distortions
from bayesrobust.attacks.criterion import Goal, Judge


def build_attack(name: str, defaults: dict | None = None, **params) -> Attack:
    """Instantiate a registered attack; unknown parameters raise ConfigError naming them. ``defaults``
    (a suite's ``eval_samples``, ``eot_samples``…) apply where ``params`` (the run's own) say nothing."""
    import inspect

    from bayesrobust.errors import ConfigError, InputError

    params = {**(defaults or {}), **params}
    cls = ATTACKS.get(name)
    common = set(inspect.signature(Attack.__init__).parameters)
    accepted = (set(inspect.signature(cls.__init__).parameters) | common) - {"self", "common"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} for attack {name!r}; allowed: {', '.join(sorted(accepted))}")
    try:
        return cls(**params)
    except (InputError, TypeError) as exc:
        raise ConfigError(f"attack {name!r}: {exc}") from None


__all__ = ["ATTACKS", "Attack", "AttackResult", "Goal", "Judge", "build_attack", "distortions"]
