"""An attack as a config names it — the one type every suite's attack entry is, or extends."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bayesrobust.errors import ConfigError
from bayesrobust.schema import typed_params

TARGETS = ("none", "next", "random")  # untargeted | (y + 1) mod 10 | seeded, never y


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack, its parameters and the kind of goal. Suites extend it with their own keys
    (an attack run's ``models`` and ``limit``, a detection attack's ``aware_of``)."""

    attack: str = "fgsm"
    params: Mapping[str, Any] = field(default_factory=dict)
    targets: str = "none"  # none | next | random (targeted-only attacks, e.g. JSMA, need one)

    def check(self, where: str, *, targeted: bool | None = None) -> None:
        """A known attack whose parameters have the annotated types and build, with a goal it supports:
        ``self.targets``, or ``targeted`` where the caller sets the targets itself (Choi's triptych).
        Errors name ``where``."""
        from bayesrobust.attacks import ATTACKS, Attack, build_attack

        if self.attack not in ATTACKS:
            raise ConfigError(f"{where}.attack: unknown attack {self.attack!r}; known: {', '.join(ATTACKS.names())}")
        checked = typed_params(ATTACKS.get(self.attack).__init__, self.params, f"{where}.params",
                               extra_hints=typing.get_type_hints(Attack.__init__))
        try:
            build_attack(self.attack, **checked)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if self.targets not in TARGETS:
            raise ConfigError(f"{where}.targets must be none, next or random, got {self.targets!r}")
        cls = ATTACKS.get(self.attack)
        wants_target = self.targets != "none" if targeted is None else targeted
        if not wants_target and not cls.supports_untargeted:
            raise ConfigError(f"{where}: {self.attack} is targeted only; set targets = 'next' or 'random'")
        if wants_target and not cls.supports_targeted and targeted is None:
            raise ConfigError(f"{where}: {self.attack} is untargeted only; set targets = 'none'")
        if wants_target and not cls.supports_targeted:
            raise ConfigError(f"{where}.attack: {self.attack} is untargeted only; this analysis needs a targeted attack")

    def describe(self) -> dict[str, Any]:
        """What a run folder's JSON records of the attack."""
        return {"attack": self.attack, "params": dict(self.params), "targets": self.targets}
