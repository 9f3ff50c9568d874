"""LoRA (Hu et al., 2021): fine-tune a large model by training a low-rank update beside each
frozen weight matrix.

    h = x W^T + (alpha / r) * dropout(x) A^T B^T        W: out x in, frozen
                                                          A: r x in, small random
                                                          B: out x r, zeros at first

B starts at zero, so training starts from the pretrained model exactly; only A and B (r x (in
+ out) numbers a matrix instead of in x out) train and sit in the optimizer. Merging adds
(alpha / r) B A into W: a plain model again, with the same outputs.

Targets name the layers of a GPT block: attn (the fused query/key/value projection), proj
(attention's output projection), mlp (the MLP's matrices), head (the LM head, untied models only).

Plain torch, no Lightning.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt.model.models import GPT

TARGETS = ("attn", "proj", "mlp", "head")


@dataclass(frozen=True)
class LoRASettings:
    """LoRA adapters for fine-tuning: only they train.

    Args:
        r: Rank of each update (Hu et al.: 1 to 64; 8 is common).
        alpha: Scale of the update, as alpha / r (so changing r keeps its size; 2r is common).
        dropout: Dropout on the adapters' input.
        targets: Which matrices get adapters: attn, proj, mlp, head.
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple[str, ...] = ("attn", "proj", "mlp")

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"model.lora.r must be a positive integer (the rank), got {self.r!r}")
        if self.alpha <= 0:
            raise ValueError(f"model.lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")
        unknown = set(self.targets) - set(TARGETS)
        if unknown or not self.targets:
            raise ValueError(f"model.lora.targets must be some of {', '.join(TARGETS)}; got {list(self.targets)}")


class LoRALinear(nn.Linear):
    """A Linear whose weight is frozen, with a trainable low-rank update beside it. Its weight
    and bias keep their names, so a base model's weights load into it as into the Linear."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float):
        nn.Module.__init__(self)  # not nn.Linear's: the weight is the base's, not a new one
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as Linear's weights (and Hu et al.'s code)
        self.lora_dropout = nn.Dropout(dropout)
        self.enabled = True  # False: the base model alone (DPO's reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if not self.enabled:
            return y
        return y + (self.lora_dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain Linear with the update added to its weight: the same outputs (in eval mode)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.weight.device)
        with torch.no_grad():
            linear.weight.copy_(self.weight + (self.lora_B @ self.lora_A) * self.scaling)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear


def targeted(name: str, targets: tuple[str, ...]) -> bool:
    """Whether the Linear at `name` (e.g. transformer.h.0.attn.c_attn) is one of the targets."""
    parts = name.split(".")
    return (
        ("attn" in targets and parts[-2:] == ["attn", "c_attn"])
        or ("proj" in targets and parts[-2:] == ["attn", "c_proj"])
        or ("mlp" in targets and len(parts) >= 2 and parts[-2] == "mlp")
        or ("head" in targets and name == "lm_head")
    )


def apply_lora(model: nn.Module, settings: LoRASettings) -> nn.Module:
    """Freeze every weight of the model and put adapters beside the targeted Linears, in place."""
    if not isinstance(model, GPT):
        raise ValueError(f"LoRA adapts a GPT's blocks; arch {model.config.arch!r} is a teaching model: use arch gpt")
    if "head" in settings.targets and model.config.tie_weights:
        raise ValueError(
            "model.lora.targets has head, but the LM head shares its weight with the token embedding "
            "(tie_weights): an update to one would change the other; leave head out"
        )
    model.requires_grad_(False)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and not isinstance(module, LoRALinear) and targeted(name, settings.targets):
            parent, _, child = name.rpartition(".")
            setattr(
                model.get_submodule(parent), child, LoRALinear(module, settings.r, settings.alpha, settings.dropout)
            )
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """The model with every update added into its weights and the adapters gone, in place:
    a plain GPT, every weight trainable again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.merged())
    return model.requires_grad_(True)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors alone (what trains), by their names in the model."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@contextlib.contextmanager
def adapters_off(model: nn.Module) -> Iterator[None]:
    """The base model alone while inside: DPO's reference, without a second copy of the weights."""
    layers = lora_layers(model)
    for layer in layers:
        layer.enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.enabled = True
