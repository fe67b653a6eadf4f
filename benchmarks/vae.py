"""Pyro's overhead: an SVI epoch of our VAE against a plain-PyTorch training loop of the same networks.

Prints JSON. Both train the same encoder/decoder (``bayesrobust.models.vae``: MLP 784–``hidden``–``latent``
by default) on the same digits with Adam at the same learning rate and batch size, on the same
single-sample Monte-Carlo ELBO (log p(x | z) + log p(z) − log q(z | x) at one reparameterised z, what
``Trace_ELBO`` estimates). Epoch times are the median over ``--epochs`` epochs after the first; the
final training ELBO of each is printed beside them as a check that both trained the same objective.
Target (issue 11): Pyro ≤ 1.5× the plain loop.

    python benchmarks/vae.py --images 10000 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from bayesrobust.config import TrainSection
from bayesrobust.data import load_dataset
from bayesrobust.models import build_model
from bayesrobust.models.vae import bernoulli_log_likelihood
from bayesrobust.seeding import seed_everything


def plain_epochs(model, train, epochs: int, batch_size: int, lr: float, seed: int) -> tuple[list[float], float]:
    """The same VAE trained by hand: (seconds per epoch, last epoch's mean ELBO)."""
    params = [*model.encoder.parameters(), *model.decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    prior = torch.distributions.Normal(0.0, 1.0)
    times, elbo = [], 0.0
    for _ in range(epochs):
        start, total = time.perf_counter(), 0.0
        order = torch.randperm(len(train), generator=shuffle)
        for i in range(0, len(train), batch_size):
            x = train.images[order[i: i + batch_size]]
            loc, scale = model.encoder(x)
            z = loc + scale * torch.randn_like(loc)
            log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
            value = (bernoulli_log_likelihood(model.decoder(z), x) + prior.log_prob(z).sum(-1) - log_q).sum()
            optimizer.zero_grad(set_to_none=True)
            (-value).backward()
            optimizer.step()
            total += float(value.detach())
        times.append(time.perf_counter() - start)
        elbo = total / len(train)
    return times, elbo


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="training digits (embedded mnist-5k, or --data-dir MNIST)")
    parser.add_argument("--data-dir", help="folder with the MNIST files; else the embedded mnist-5k")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--latent", type=int, default=50)
    parser.add_argument("--encoder", default="mlp", choices=("mlp", "conv"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    name = "mnist" if args.data_dir else "mnist-5k"
    train = load_dataset(name, "train", args.data_dir).head(args.images, seed=args.seed)
    params = {"encoder": args.encoder, "hidden": args.hidden, "latent": args.latent, "classifier_epochs": 1}

    seed_everything(args.seed)
    plain_model = build_model("vae", **params)
    plain_times, plain_elbo = plain_epochs(plain_model, train, args.epochs, args.batch_size, 1e-3, args.seed)

    seed_everything(args.seed)
    pyro_model = build_model("vae", **params)
    pyro_model.fit(train, TrainSection(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3), seed=args.seed, progress=False)
    svi = [r for r in pyro_model.history_ if "train_elbo" in r]
    pyro_times = [r["seconds"] for r in svi]

    def median(times: list[float]) -> float:
        return statistics.median(times[1:] if len(times) > 1 else times)

    result = {
        "benchmark": "vae_svi_overhead", "images": len(train), "batch_size": args.batch_size, "encoder": args.encoder,
        "hidden": args.hidden, "latent": args.latent, "epochs": args.epochs, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(),
        "plain_epoch_seconds": median(plain_times), "pyro_svi_epoch_seconds": median(pyro_times),
        "pyro_over_plain": median(pyro_times) / median(plain_times),
        "plain_final_train_elbo": plain_elbo, "pyro_final_train_elbo": svi[-1]["train_elbo"],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
