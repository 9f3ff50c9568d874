"""AdamW with weight decay on matrices only, and nanoGPT's learning-rate schedule: linear
warmup, then cosine decay to min_lr.

    optimizer = adamw(model, learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    scheduler = warmup_cosine(optimizer, warmup_steps=100, decay_steps=5000, min_lr=1e-4)
    # every optimizer step: optimizer.step(); scheduler.step()

Plain torch, no Lightning: the LightningModule and the bare loop in
benchmarks/lightning_overhead.py both build their optimizer here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay every matrix (Linear weights, embeddings); never biases or norm gains.

    Shrinking a bias or a LayerNorm gain towards zero is not regularisation, it only
    fights the optimiser. Tied weights appear once (parameters() skips duplicates).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def describe_groups(groups: list[dict[str, Any]]) -> str:
    """One line saying how many tensors and parameters each group holds."""
    return "; ".join(
        f"{len(g['params'])} tensors, {sum(p.numel() for p in g['params']):,} parameters with weight decay "
        f"{g['weight_decay']}"
        for g in groups
    )


def adamw(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.99),
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW over param_groups(model); fused (one kernel for all tensors) on a GPU."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=learning_rate, betas=betas, fused=fused)


def cosine_lr(step: int, learning_rate: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_lr at decay_steps (nanoGPT)."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, decay_steps: int, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that sets every group's learning rate to cosine_lr of the step, taking
    the peak from the optimizer's lr; step it once per optimizer step."""
    peak = optimizer.defaults["lr"]
    if peak <= 0:
        raise ValueError(f"learning_rate must be > 0, got {peak}")
    if not 0 <= min_lr <= peak:
        raise ValueError(f"need 0 <= min_lr <= learning_rate, got min_lr={min_lr}, learning_rate={peak}")

    def factor(step: int) -> float:
        return cosine_lr(step, peak, min_lr, warmup_steps, decay_steps) / peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
