"""AdamW with weight decay on matrices only (or Muon for the hidden matrices and AdamW for
the rest), and nanoGPT's learning-rate schedule: linear warmup, then cosine decay to min_lr.

    optimizer = adamw(model, learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    optimizer = muon_adamw(model, learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
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

from gpt.model.muon import Muon


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
        f"{g['weight_decay']}" + (" (Muon)" if g.get("name") == "muon" else "")
        for g in groups
    )


def use_fused(params: Iterable[torch.Tensor]) -> bool:
    """Whether AdamW can run fused, one kernel for every tensor: when all of them are on CUDA
    or all on the CPU (torch's fused CPU kernel: 3x faster a step than its default for the
    CPU config, 4.5x for baby; `python benchmarks/optimizer_step.py`). Mixed devices (a CPU
    offload, say): torch's default."""
    devices = {p.device.type for p in params}
    return devices in ({"cuda"}, {"cpu"})


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


def is_hidden_matrix(name: str, module: nn.Module) -> bool:
    """A Linear inside the network: attention and MLP weights, not the output layer."""
    return isinstance(module, nn.Linear) and not name.endswith("lm_head")


def muon_adamw(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.99),
    fused: bool | None = None,
) -> MuonAdamW:
    """Muon (Jordan et al. 2024, as the modded-nanogpt speedrun uses it) for the hidden matrices,
    AdamW for embeddings, the output layer, biases and gains, which Muon is not meant for.

    One learning rate serves both: torch's Muon scales its orthogonalised update to the RMS of
    an AdamW update (adjust_lr_fn="match_rms_adamw", Liu et al. 2025, "Muon is scalable").
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}  # tied heads included
    hidden = [
        m.weight
        for name, m in model.named_modules()
        if is_hidden_matrix(name, m) and id(m.weight) not in embeddings and m.weight.requires_grad
    ]
    rest = [
        g | {"params": [p for p in g["params"] if all(p is not h for h in hidden)]}
        for g in param_groups(model, weight_decay)
    ]
    muon = Muon(
        [{"params": hidden, "weight_decay": weight_decay, "name": "muon"}],
        lr=learning_rate,
        momentum=0.95,
        adjust_lr_fn="match_rms_adamw",
    )
    fused = use_fused(model.parameters()) if fused is None else fused
    adam = torch.optim.AdamW(rest, lr=learning_rate, betas=betas, fused=fused)
    return MuonAdamW(muon, adam)


class MuonAdamW(torch.optim.Optimizer):
    """Two optimizers stepped as one, so that Lightning, the LR schedule and gradient clipping
    see a single optimizer: param_groups is both lists (the same dicts), the state both states."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.optimizers = (muon, adamw)
        super().__init__([p for g in muon.param_groups + adamw.param_groups for p in g["params"]], adamw.defaults)
        self.param_groups = muon.param_groups + adamw.param_groups

    @property
    def state(self) -> dict:
        return {**self.optimizers[0].state, **self.optimizers[1].state}

    @state.setter
    def state(self, value: dict) -> None:  # Optimizer.__init__ sets it: the inner ones hold it
        pass

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.optimizers[0].state_dict(), "adamw": self.optimizers[1].state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizers[0].load_state_dict(state_dict["muon"])
        self.optimizers[1].load_state_dict(state_dict["adamw"])
        self.param_groups = self.optimizers[0].param_groups + self.optimizers[1].param_groups


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
