"""What the attack suite writes and its report reads: the key families of its own metrics and arrays,
and the schema of ``arrays/attack.json``. The analyses declare their keys in their own modules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bayesrobust.keys import Key

# metrics.json
RUN = Key("adv/{run}/{model}/{measure}")  # a configured run (or its "<run>@adaptive" form) on one model
CLEAN = Key("adv/clean/{model}/{measure}")  # the same quantities on the unattacked digits
WORST_CASE = Key("adv/worst_case/{model}/{measure}")  # every run on one model at once, as AutoAttack counts
METRIC_KEYS = (RUN, CLEAN, WORST_CASE)  # RUN's family holds the other two ("clean", "worst_case" are reserved run names)

# arrays/attack.npz: per-example values (never the same string as a metric) and the digits shown
LABELS = "attacked/labels"
PER_EXAMPLE = Key("per_example/{run}/{model}/{quantity}")  # run "clean": the unattacked digits
SHOWN = Key("shown/{run}/{model}/{quantity}")  # one adversarial digit per class: images, predicted
ORIGINAL = Key("shown/{run}/original/{quantity}")  # the same digits unattacked: images, labels


@dataclass(frozen=True)
class AttackMeta:
    """``arrays/attack.json``: what the report needs besides the metrics and arrays."""

    models: list[str]
    runs: dict[str, dict]  # run name → AttackSpec.describe()
    adaptive: dict[str, dict]  # "<run>@adaptive" → {"of": run, "params": {...}}
    examples: int
    eval_samples: int
    eot_samples: int
    modes: dict[str, str] = field(default_factory=dict)
    draws: dict[str, str] = field(default_factory=dict)  # model → its draw protocol ("none": one deterministic pass)
    analyses: dict[str, Any] = field(default_factory=dict)  # analysis name → what its run returned for the report

    def write(self, run) -> None:
        run.write_json("arrays/attack.json", dataclasses.asdict(self))

    @classmethod
    def read(cls, run) -> AttackMeta:
        data = run.read_json("arrays/attack.json")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def random_models(self) -> list[str]:
        """The models whose predictive has several draws (a spread between them to plot)."""
        return [n for n in self.models if self.draws.get(n, "none") != "none"]


@dataclass(frozen=True)
class AttackFiles:
    """A run folder's attack results, as every attack report section reads them."""

    meta: AttackMeta
    arrays: Any  # name → ndarray (arrays/attack.npz)
    metrics: dict[str, float]

    @classmethod
    def load(cls, run) -> AttackFiles | None:
        if not run.file("arrays/attack.npz").exists() or not run.file("arrays/attack.json").exists():
            return None
        return cls(AttackMeta.read(run), run.load_arrays("arrays/attack.npz"), run.metrics())
