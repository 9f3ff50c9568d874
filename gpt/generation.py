"""Sampling: extend a sequence one token at a time.

Plain torch, no Lightning.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: Optional[int]) -> None:
    """Refuse bad settings before any work is done."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Pick one id per row from logits (B, vocab_size) -> (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy
    logits = logits / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None and top_k < logits.size(-1):
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Append max_new_tokens sampled ids to idx (B, T) and return (B, T + max_new_tokens).

    The model only sees its last block_size tokens, so generation can run past the
    context window.
    """
    check_sampling_args(max_new_tokens, temperature, top_k)
    block_size = model.config.block_size
    for _ in range(max_new_tokens):
        context = idx[:, -block_size:]
        logits = model(context)[:, -1, :]
        idx_next = sample_next(logits, temperature, top_k, generator)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx
