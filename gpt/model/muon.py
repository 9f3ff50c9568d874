"""Muon (Jordan et al. 2024): momentum, then the update orthogonalised by a few Newton-Schulz
iterations, so that every direction of a weight matrix moves by about the same amount.

    optimizer = Muon(hidden_matrices, lr=1e-2, adjust_lr_fn="match_rms_adamw")

torch.optim.Muon runs Newton-Schulz in bf16 always: on a GPU that is what makes it cheap, but
a CPU without native bf16 (AVX2 only, no AVX512-BF16 or AMX) emulates bf16 matmuls about 60x
slower than fp32. This Muon is torch's, state and settings alike, with Newton-Schulz in bf16 on
a GPU and in fp32 on a CPU (as fast where bf16 is native, 5-6x faster where it is not, and the
same loss: `python benchmarks/muon_dtype.py`).
"""

from __future__ import annotations

import math

import torch


def newton_schulz(
    G: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype
) -> torch.Tensor:
    """An approximate U V^T of G = U S V^T: a quintic iteration X <- aX + (bA + cA^2)X with
    A = X X^T, from X = G / |G| (spectral norm at most 1), run in `dtype`. The coefficients
    push small singular values up fast rather than converge exactly (Jordan et al.); the
    arithmetic is torch.optim.Muon's, operation for operation, so bf16 gives its floats."""
    a, b, c = coefficients
    X = G.to(dtype)
    wide = G.size(0) > G.size(1)
    if wide:  # iterate on the smaller Gram matrix
        X = X.T
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.addmm(X, B, X, beta=a)
    return X.T if wide else X


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's scaling of the learning rate by a matrix's shape: "match_rms_adamw"
    gives the update the RMS of an AdamW update (Liu et al. 2025), "original" (or None) is
    Jordan et al.'s sqrt(max(1, rows / columns))."""
    rows, columns = shape[:2]
    if adjust_lr_fn in (None, "original"):
        return lr * math.sqrt(max(1, rows / columns))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, columns))
    return lr


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU, where it runs on tensor cores; fp32 elsewhere (see the module's note)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


class Muon(torch.optim.Muon):
    """torch.optim.Muon, with Newton-Schulz in newton_schulz_dtype of each weight's device.
    The state (one momentum buffer a matrix) and the param groups are torch's, so checkpoints
    of either load in the other."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz(
                    update, group["ns_coefficients"], group["ns_steps"], group["eps"], newton_schulz_dtype(p.device)
                )
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss
