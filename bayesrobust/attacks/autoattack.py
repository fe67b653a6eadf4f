"""AutoAttack (Croce & Hein 2020, arXiv:2003.01690) as a composite: attacks run one after another, each
only on the examples every earlier one left unbroken, and an example counts as broken if any stage broke
it — the field's standard robustness evaluation.

``version = "standard"``: APGD-CE, APGD-T (the DLR-targeted loss towards each of the 9 most probable wrong
classes) and Square (5,000 queries). The original's third stage, FAB-T, is not part of this toolkit: it
is a minimum-norm attack, and Croce & Hein report that it rarely adds to the other three (see
docs/attacks.md). ``version = "rand"``, for randomised defences: APGD-CE and APGD-DLR with EOT over 20
draws per gradient (on a stochastic model; a deterministic one needs none).

Every stage is judged by the call's one judge (``criterion.py``), restricted to the rows it attacks but
with the draws those rows get in the whole batch, so what a stage claims is what the call reports —
and, unlike picking each example's final image from one noisy evaluation (auto-attack PRs #104/#105),
a stage's success on a stochastic model is the MC mean's over the judge's fixed draws. ``broken_by``
in the result names the stage that broke each example; the summary gives the robust accuracy left
after each stage.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from bayesrobust.attacks.apgd import APGD
from bayesrobust.attacks.ball import check_norm
from bayesrobust.attacks.base import ATTACKS, Attack, check_positive
from bayesrobust.attacks.square import Square
from bayesrobust.errors import InputError

VERSIONS = ("standard", "rand")


@ATTACKS.register("autoattack")
class AutoAttack(Attack):
    """The composite of APGD and Square stages (module docstring). ``steps``: APGD's steps per run
    (100), ``queries``: Square's budget (5,000), ``target_classes``: APGD-T's targets (9), ``eot``: the
    rand version's draws per gradient (20). The common arguments (``eval_samples``, the goal) apply to
    every stage; ``eot_samples`` to the standard version's gradient stages.

    >>> AutoAttack(eps=0.3, version="standard")(model, x, y).summary()["robust_accuracy_after_square"]
    """

    name = "autoattack"
    tiny_params = {"eps": 0.2, "steps": 3, "queries": 10, "target_classes": 2}
    norm = "Linf"  # the class default; an instance's ``norm`` is its own
    supports_penalty = False

    def __init__(self, eps: float = 0.3, norm: str = "Linf", version: str = "standard", steps: int = 100,
                 queries: int = 5000, target_classes: int = 9, eot: int = 20, **common) -> None:
        super().__init__(**common)
        self.eps = check_positive("eps", eps, allow_zero=False)
        self.norm = check_norm(norm)
        if version not in VERSIONS:
            raise InputError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        for key, value in (("steps", steps), ("queries", queries), ("target_classes", target_classes), ("eot", eot)):
            if int(value) < 1:
                raise InputError(f"{key} must be >= 1, got {value}")
        self.version, self.steps, self.queries = version, int(steps), int(queries)
        self.target_classes, self.eot = int(target_classes), int(eot)
        self._common = common

    def stages(self, model, targeted: bool) -> list[tuple[str, Attack]]:
        """(name, attack) of every stage, in order."""
        shared = {**self._common, "eps": self.eps, "norm": self.norm}
        if self.version == "rand":
            eot = max(self.eot, self.eot_samples) if model.draws.random else self.eot_samples
            shared["eot_samples"] = eot
            return [("apgd-ce", APGD(loss="ce", steps=self.steps, **shared)),
                    ("apgd-dlr", APGD(loss="dlr", steps=self.steps, **shared))]
        return [("apgd-ce", APGD(loss="ce", steps=self.steps, **shared)),
                ("apgd-t" if not targeted else "apgd-dlr",
                 APGD(loss="dlr", steps=self.steps, target_classes=0 if targeted else self.target_classes, **shared)),
                ("square", Square(queries=self.queries, **{k: v for k, v in shared.items() if k != "eot_samples"}))]

    def __call__(self, model, x, y, *, target=None, generator=None, progress=True):
        result = super().__call__(model, x, y, target=target, generator=generator, progress=progress)
        return replace(result, broken_by=self.broken_by_.cpu(), params={**result.params, "stages": self.stage_names_})

    def perturb(self, model, x, y, target, generator, judge):
        stages = self.stages(model, target is not None)
        self.stage_names_ = ["clean"] + [name for name, _ in stages]
        x_adv = x.clone()
        iterations = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        finished = judge.success(x)  # already reached on the clean image: stage 0
        broken_by = torch.where(finished, 0, -1).to(x.device)
        for i, (_, attack) in enumerate(stages, start=1):
            rows = torch.nonzero(~finished).squeeze(1)
            if rows.numel() == 0:
                break
            attack._progress = getattr(self, "_progress", True)
            sub = judge.restricted(rows, x_adv)
            adv, spent, done = attack.perturb(model, x[rows], y[rows], None if target is None else target[rows], generator, sub)
            x_adv[rows] = adv  # broken rows: the breaking image; the others: the stage's best try
            iterations[rows] += spent
            finished[rows] |= done
            broken_by[rows[done]] = i
        self.broken_by_ = broken_by
        return x_adv, iterations, finished
