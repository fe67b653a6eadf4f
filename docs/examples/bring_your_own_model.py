"""Bring your own model: a plain PyTorch CNN, trained by its author, enters bayesrobust as it is.

    python docs/examples/bring_your_own_model.py [OUT_DIR]

Each cell below is what docs/byom.md walks through; tests/test_examples.py runs this file verbatim.
"""

# %% 1. The user's network and their own training loop (nothing of bayesrobust yet)
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # my_nets.py sits beside this script
from my_nets import MyCNN  # noqa: E402

from bayesrobust import wrap  # noqa: E402
from bayesrobust.attacks import build_attack  # noqa: E402
from bayesrobust.data import load_dataset  # noqa: E402
from bayesrobust.detection import UncertaintyDetector  # noqa: E402
from bayesrobust.metrics.bootstrap import bootstrap  # noqa: E402
from bayesrobust.metrics.calibration import ece_statistic  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else "byom_out")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
train, test = load_dataset("mnist-5k", "train"), load_dataset("mnist-5k", "test")  # mnist-5k is sorted by label: shuffle
net = MyCNN()
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
for _epoch in range(2):
    net.train()
    for idx in torch.randperm(len(train)).split(64):
        optimizer.zero_grad()
        F.cross_entropy(net(train.images[idx]), train.labels[idx]).backward()
        optimizer.step()
torch.save(net.state_dict(), out / "weights.pt")

# %% 2. Wrap it: MC dropout on its own nn.Dropout layers, BatchNorm kept in evaluation mode
model = wrap(net, "mc_dropout")                       # any nn.Module mapping (N, 1, 28, 28) in [0, 1] to logits
g = torch.Generator().manual_seed(0)
pred = model.predictive(test.images, samples=50, generator=g)
shifted = model.predictive(load_dataset("digits", "test").images, samples=50, generator=g)
print(f"accuracy {pred.accuracy(test.labels):.3f}  NLL {pred.nll(test.labels):.3f}")
print(f"mutual information: MNIST {pred.mutual_information.mean():.3f}, scikit-learn digits {shifted.mutual_information.mean():.3f} nats")

# %% 3. BIM with expectation over transformation (10 masks per gradient), judged on the MC predictive
x, y = test.images[::10], test.labels[::10]          # 100 digits, every class
result = build_attack("bim", eps=0.2, alpha=0.01, steps=20, eot_samples=10)(model, x, y, generator=g)
print(f"BIM success {result.success.float().mean():.2f} (fresh draws {result.success_fresh.float().mean():.2f}), "
      f"MI clean {pred.mutual_information[::10].mean():.3f} -> adversarial {result.predictive.mutual_information.mean():.3f}")

# %% 4. Expected calibration error with its 95% bootstrap interval, bias-corrected: the plug-in ECE is biased
# upward and its percentile interval can exclude the estimate itself (docs/byom.md, section 4)
plug_in = bootstrap(ece_statistic(15), pred.confidence.numpy(), (pred.predicted == test.labels).numpy(), resamples=1000, seed=0)
ece = plug_in.bias_corrected(floor=0.0)
print(f"ECE {100 * ece.estimate:.2f}% [{100 * ece.low:.2f}, {100 * ece.high:.2f}] (bias-corrected; plug-in {100 * plug_in.estimate:.2f}%)")

# %% 5. An uncertainty detector: threshold chosen on validation digits (clean vs BIM), scored on others
val_x, val_y = test.images[5::10], test.labels[5::10]
val_adv = build_attack("bim", eps=0.2, alpha=0.01, steps=20, eot_samples=10)(model, val_x, val_y, generator=g).x_adv
detector = UncertaintyDetector(model, "mi", samples=50).fit(val_x, val_adv)
flagged_clean, flagged_adv = detector.decide(x).mean(), detector.decide(result.x_adv).mean()
print(f"MI detector flags {flagged_clean:.2f} of clean and {flagged_adv:.2f} of adversarial digits")

# %% 6. The same network named in a TOML file and run by the CLI, with the author's weights
run = subprocess.run(
    [sys.executable, "-m", "bayesrobust.cli", "run", str(Path(__file__).with_name("my_cnn.toml")), "--out", str(out / "run"),
     "--overwrite", "--quiet", "--set", f"models.mine.checkpoint={out / 'weights.pt'}", "--set", "evaluation.samples=10",
     "--set", "calibration.samples=10", "--set", "calibration.attack_limit=50", "--set", "data.test_limit=500"],
    env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])},
    check=True)
