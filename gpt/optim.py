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
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay every matrix (Linear weights, embeddings); never biases or norm gains.

    Shrinking a bias or a LayerNorm gain towards zero is not regularisation, it only
    fights the optimiser. Tied weights appear once (parameters() skips duplicates). A weight
    is told by its module, not its shape: FSDP hands the optimizer flat 1-D shards.
    """
    matrices = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))}
    decay = [p for p in model.parameters() if p.requires_grad and id(p) in matrices]
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) not in matrices]
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


def use_fused(params: Iterable[torch.Tensor]) -> bool:
    """Whether AdamW can run fused, one kernel for every tensor: when all of them are on CUDA.
    Elsewhere torch's default applies (foreach: a few batched kernels where supported)."""
    params = list(params)
    return bool(params) and all(p.device.type == "cuda" for p in params)


def adamw(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.99),
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over param_groups(model); fused (unset: where the parameters allow, see use_fused)."""
    if fused is None:
        fused = use_fused(model.parameters())
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=learning_rate, betas=betas, fused=fused)


def cosine_lr(step: int, learning_rate: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_lr at decay_steps (nanoGPT)."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Sets every group's learning rate to cosine_lr of the step; step it once per optimizer step.

    Its state (state_dict) is only the step it has reached. The settings are those it is
    built with, so a resumed run follows the settings it resumes with: a new learning rate
    or horizon takes effect at once, from the step the checkpoint reached.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, learning_rate: float, min_lr: float, warmup_steps: int, decay_steps: int
    ):
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0 <= min_lr <= learning_rate:
            raise ValueError(f"need 0 <= min_lr <= learning_rate, got min_lr={min_lr}, learning_rate={learning_rate}")
        self.learning_rate, self.min_lr = learning_rate, min_lr
        self.warmup_steps, self.decay_steps = warmup_steps, decay_steps
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        # The peak times a factor, as LambdaLR computes it: the same floats as before this class.
        factor = cosine_lr(self.last_epoch, self.learning_rate, self.min_lr, self.warmup_steps, self.decay_steps)
        return [self.learning_rate * (factor / self.learning_rate) for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch, self._step_count = state_dict["last_epoch"], state_dict.get("_step_count", 1)
        # The restored optimizer holds the rate of the old settings: set this step's now.
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, decay_steps: int, min_lr: float) -> WarmupCosine:
    """A WarmupCosine that peaks at the optimizer's learning rate."""
    return WarmupCosine(optimizer, optimizer.defaults["lr"], min_lr, warmup_steps, decay_steps)
