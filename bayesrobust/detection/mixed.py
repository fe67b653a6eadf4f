"""Mixed clean / adversarial sets for detection, built the way the seed reproduction describes and
the originals leave implicit: only test digits the undefended model classifies correctly; only
*successful* adversarial examples; clean and attacked digits drawn from disjoint halves (so no clean
digit has its own adversarial twin in the set); equal numbers of each."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayesrobust.attacks.base import choose_targets, run_batched
from bayesrobust.errors import InputError
from bayesrobust.seeding import make_generator


@dataclass(frozen=True)
class MixedSet:
    images: torch.Tensor  # (N, 1, 28, 28), clean first then adversarial
    labels: torch.Tensor  # (N,) true labels
    is_adversarial: torch.Tensor  # (N,) bool
    source: torch.Tensor  # (N,) index of the source digit in the input set
    l2: torch.Tensor  # (N,) L2 distance from the source digit (0 for clean digits)

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, fraction: float, seed: int) -> tuple[MixedSet, MixedSet]:
        """(validation, evaluation): a seeded split stratified by clean / adversarial, disjoint in
        source digits."""
        g = make_generator(seed)
        val_idx, eval_idx = [], []
        for flag in (False, True):
            idx = torch.nonzero(self.is_adversarial == flag).squeeze(1)
            idx = idx[torch.randperm(len(idx), generator=g)]
            k = int(round(fraction * len(idx)))
            val_idx.append(idx[:k])
            eval_idx.append(idx[k:])
        return self._take(torch.cat(val_idx)), self._take(torch.cat(eval_idx))

    def _take(self, idx: torch.Tensor) -> MixedSet:
        return MixedSet(self.images[idx], self.labels[idx], self.is_adversarial[idx], self.source[idx], self.l2[idx])

    def as_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The set as NumPy arrays under ``prefix/`` (what a run folder keeps of it)."""
        return {f"{prefix}/{name}": getattr(self, name).numpy() for name in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> MixedSet:
        return cls(**{name: torch.from_numpy(arrays[f"{prefix}/{name}"]) for name in cls.__dataclass_fields__})

    @property
    def clean(self) -> torch.Tensor:
        return self.images[~self.is_adversarial]

    @property
    def adversarial(self) -> torch.Tensor:
        return self.images[self.is_adversarial]


def correctly_classified(model, x: torch.Tensor, y: torch.Tensor, *, samples: int, seed: int) -> torch.Tensor:
    """Boolean mask of the digits the model's predictive (``samples`` draws) classifies correctly."""
    pred = model.predictive(x, samples, generator=make_generator(seed))
    return pred.predicted == y


def build_mixed_set(model, attack, x: torch.Tensor, y: torch.Tensor, *, size: int = 0, samples: int = 50, seed: int = 0,
                    batch_size: int = 250, progress: bool = False, successful_only: bool = True,
                    targets: str = "none", desc: str = "") -> MixedSet:
    """Up to ``size`` images (0: as many as the data allow), half clean and half adversarial.

    The correctly classified digits are shuffled (seeded) and cut in two halves; the second half is
    attacked (untargeted) and, with ``successful_only``, only its successful examples kept (without it,
    every attacked digit counts as adversarial, as the seed reproduction's 58.5% undefended accuracy on
    its FGSM set implies); both sides are then cut to the smaller count (and to ``size // 2``). ``targets``
    (none, next, random) is for targeted-only attacks such as JSMA."""
    if len(x) != len(y):
        raise InputError(f"{len(x)} images but {len(y)} labels")
    ok = torch.nonzero(correctly_classified(model, x, y, samples=samples, seed=seed)).squeeze(1)
    ok = ok[torch.randperm(len(ok), generator=make_generator(seed))]
    half = len(ok) // 2
    clean_idx, attack_idx = ok[:half], ok[half:]
    if size:
        attack_idx = attack_idx[:size]  # twice the adversarial half: not every attack succeeds
    target = choose_targets(targets, y[attack_idx], seed)
    result = run_batched(attack, model, x[attack_idx], y[attack_idx], target=target, batch_size=batch_size,
                         generator=make_generator(seed + 1), progress=progress, desc=desc or f"mixed set {attack.name}")
    adv_idx = torch.nonzero(result.success if successful_only else torch.ones_like(result.success)).squeeze(1)
    n = min(len(clean_idx), len(adv_idx), size // 2 if size else len(clean_idx))
    if n == 0:
        raise InputError("no successful adversarial examples (or no correctly classified digits) to build a mixed set from")
    clean_idx, adv_idx = clean_idx[:n], adv_idx[:n]
    return MixedSet(
        images=torch.cat([x[clean_idx], result.x_adv[adv_idx].cpu()]),
        labels=torch.cat([y[clean_idx], y[attack_idx][adv_idx]]),
        is_adversarial=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]),
        source=torch.cat([clean_idx, attack_idx[adv_idx]]),
        l2=torch.cat([torch.zeros(n), result.l2[adv_idx].cpu().float()]),
    )
