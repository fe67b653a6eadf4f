"""Mini-batch training with SGD / Adam / RMSProp, L1 + L2 weight penalties and early stopping."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bayesrobust.errors import ConfigError
from bayesrobust.progress import progress_bar
from bayesrobust.seeding import derive_seed, make_generator


def make_optimizer(params, config) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    if config.optimizer == "rmsprop":  # Lacok (2016): RMSProp with decay 0.9, epsilon 1e-6
        return torch.optim.RMSprop(params, lr=config.lr, alpha=0.9, eps=1e-6)
    raise ConfigError(f"train.optimizer: unknown optimizer {config.optimizer!r}; expected sgd, adam or rmsprop")


def weight_penalty(parameters, l1: float, l2: float) -> torch.Tensor:
    """λ₁ Σ|w| + λ₂ Σ w² over the given weight matrices and kernels (biases are not penalised)."""
    total = torch.zeros(())
    for p in parameters:
        if p.dim() > 1:
            total = total.to(p.device)
            if l1:
                total = total + l1 * p.abs().sum()
            if l2:
                total = total + l2 * p.pow(2).sum()
    return total


@torch.no_grad()
def evaluate_nll(model, data, batch_size: int = 1000) -> tuple[float, float]:
    """(NLL, accuracy) of the model's deterministic point predictive (a net with dropout off): cheap and
    stable for early stopping."""
    nll, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        x = data.images[start: start + batch_size].to(model.device)
        y = data.labels[start: start + batch_size].to(model.device)
        log_probs = model.point_log_prob(x)
        nll += float(F.nll_loss(log_probs, y, reduction="sum"))
        correct += int((log_probs.argmax(1) == y).sum())
    return nll / len(data), correct / len(data)


def adversarial_objective(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                          eps: float, alpha: float) -> torch.Tensor:
    """Goodfellow et al.'s adversarial training objective α·J(x) + (1 − α)·J(x + ε·sign ∇ₓJ(x)) for any
    batch objective J: the fast-gradient-sign image is recomputed from the current weights at every step
    (clipped to [0, 1], as the attacks it defends against are) and treated as data, not differentiated."""
    x = x.detach().requires_grad_(True)
    clean = loss(x, y)
    (grad,) = torch.autograd.grad(clean, x, retain_graph=True)
    x_adv = (x + eps * grad.sign()).clamp(0.0, 1.0).detach()
    return alpha * clean + (1.0 - alpha) * loss(x_adv, y)


def train_model(model, train, config, *, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], val=None,
                seed: int = 0, progress: bool = True, parameters=None, penalised=None) -> None:
    """Train ``model`` in place on mini-batches of ``train``: ``loss(x, y)`` is the batch's mean
    objective (a net's cross-entropy, a GP's negative ELBO) — with ``adversarial_eps`` > 0 inside
    Goodfellow et al.'s adversarial objective (:func:`adversarial_objective`) — plus the section's L1/L2 penalty on the
    ``penalised`` parameters (default: every weight matrix and kernel of the model). ``parameters``
    (default: all) may be optimiser parameter groups with their own learning rates. Shuffling comes from
    ``seed``; with validation data and ``patience`` the weights of the best validation NLL (of
    ``model.point_log_prob``) are kept."""
    shuffle = make_generator(derive_seed(seed, "train", "shuffle"))
    optimizer = make_optimizer(model.parameters() if parameters is None else parameters, config)
    penalised = list(model.parameters()) if penalised is None else list(penalised)
    best_state, best_nll, stale = None, float("inf"), 0
    n = len(train)
    model.history_ = []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train(True)
        order = torch.randperm(n, generator=shuffle)
        total = 0.0
        bar = progress_bar(range(0, n, config.batch_size), desc=f"{model.arch} epoch {epoch}/{config.epochs}",
                           enabled=progress, leave=False)
        for i in bar:
            idx = order[i: i + config.batch_size]
            x, y = train.images[idx].to(model.device), train.labels[idx].to(model.device)
            value = (adversarial_objective(loss, x, y, config.adversarial_eps, config.adversarial_alpha)
                     if config.adversarial_eps > 0 else loss(x, y))
            objective = value + weight_penalty(penalised, config.l1, config.l2) if (config.l1 or config.l2) else value
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            total += float(value.detach()) * len(idx)
        model.train(False)
        record = {"epoch": epoch, "train_loss": total / n, "seconds": time.perf_counter() - start}
        if val is not None and len(val):
            record["val_nll"], record["val_acc"] = evaluate_nll(model, val)
        model.history_.append(record)
        if val is not None and len(val) and config.patience > 0:
            if record["val_nll"] < best_nll - 1e-4:
                best_nll, stale = record["val_nll"], 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
    optimizer.zero_grad(set_to_none=True)  # a trained model holds no stale gradients
    if best_state is not None:
        model.load_state_dict(best_state)


def pretrain(modules, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], train, config, *, epochs: int,
             seed: int, progress: bool, desc: str) -> list[float]:
    """A stage before the real training: ``epochs`` of mini-batches minimising ``loss(x, y)`` over the
    parameters of ``modules`` (no validation, no early stopping); returns the mean loss per epoch. The
    modules are in training mode meanwhile (a GP then caches nothing, a spectral bound runs its power
    iteration) and return to their modes after."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.train(True)
    try:
        return _pretrain(modules, loss, train, config, epochs=epochs, seed=seed, progress=progress, desc=desc)
    finally:
        for m, mode in modes:
            m.training = mode


def _pretrain(modules, loss, train, config, *, epochs: int, seed: int, progress: bool, desc: str) -> list[float]:
    params = [p for m in modules for p in m.parameters()]
    optimizer = make_optimizer(params, config)
    shuffle = make_generator(derive_seed(seed, "pretrain", "shuffle"))
    device = params[0].device
    losses = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train), generator=shuffle)
        total = 0.0
        for i in progress_bar(range(0, len(train), config.batch_size), desc=f"{desc} {epoch}/{epochs}",
                              enabled=progress, leave=False):
            idx = order[i: i + config.batch_size]
            x, y = train.images[idx].to(device), train.labels[idx].to(device)
            value = loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += float(value.detach()) * x.shape[0]
        losses.append(total / len(train))
    optimizer.zero_grad(set_to_none=True)
    return losses


def pretrain_autoencoder(encoder, decoder, train, config, *, epochs: int, seed: int, progress: bool) -> list[float]:
    """Greedy reconstruction pre-training (binary cross-entropy on pixels in [0, 1]); returns the
    mean loss per epoch."""
    return pretrain([encoder, decoder], lambda x, y: F.binary_cross_entropy(decoder(encoder(x)).view_as(x), x),
                    train, config, epochs=epochs, seed=seed, progress=progress, desc="autoencoder")
