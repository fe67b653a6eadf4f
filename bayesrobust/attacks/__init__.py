"""Attacks: one per module, each ``attack(model, x, y, target=None) -> AttackResult``."""

from bayesrobust.attacks import bim, cw_l2, fgsm, jsma, lbfgs, sign_noise, targeted_l2  # noqa: F401
from bayesrobust.attacks.base import ATTACKS, Attack, AttackResult, distortions


def build_attack(name: str, **params) -> Attack:
    """Instantiate a registered attack; unknown parameters raise ConfigError naming them."""
    import inspect

    from bayesrobust.errors import ConfigError, InputError

    cls = ATTACKS.get(name)
    accepted = (set(inspect.signature(cls.__init__).parameters) | {"eot_samples", "eval_samples"}) - {"self", "common"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} for attack {name!r}; allowed: {', '.join(sorted(accepted))}")
    try:
        return cls(**params)
    except (InputError, TypeError) as exc:
        raise ConfigError(f"attack {name!r}: {exc}") from None


__all__ = ["ATTACKS", "Attack", "AttackResult", "build_attack", "distortions"]
