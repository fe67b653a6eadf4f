"""Attacks: one per module, each ``attack(model, x, y, target=None) -> AttackResult``."""

from bayesrobust.attacks.base import ATTACKS, Attack, AttackResult, distortions
from bayesrobust.attacks.criterion import Goal, Judge


def build_attack(name: str, defaults: dict | None = None, **params) -> Attack:
    """Instantiate a registered attack; unknown parameters raise ConfigError naming them. ``defaults``
    (a suite's ``eval_samples``, ``eot_samples``…) apply where ``params`` (the run's own) say nothing."""
    from bayesrobust.errors import ConfigError, InputError
    from bayesrobust.schema import refuse_unknown_keywords

    params = {**(defaults or {}), **params}
    cls = ATTACKS.get(name)
    refuse_unknown_keywords(params, cls.__init__, Attack.__init__, what=f"attack {name!r}", ignore=("common",))
    try:
        return cls(**params)
    except (InputError, TypeError) as exc:
        raise ConfigError(f"attack {name!r}: {exc}") from None


__all__ = ["ATTACKS", "Attack", "AttackResult", "Goal", "Judge", "build_attack", "distortions"]
