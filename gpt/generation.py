"""Sampling: extend a sequence one token at a time.

With a KV cache (models that support one: the GPT) the prompt is prefilled once and every
step feeds the model one new token; without, every step recomputes the whole context.

Past the context window. Without the cache the model sees exactly the last block_size
tokens at every step, so every step past the window costs a full block_size forward. With
the cache, learned absolute positions cannot roll (a token's keys were computed at its old
position), so when the cache is full it is re-prefilled with the last block_size // 2
tokens at positions 0, 1, ... and decoding carries on; llama.cpp's "context shift" does
the same. The model then sees between block_size // 2 and block_size of the latest tokens,
and pays one half-window prefill per block_size // 2 new tokens. Within the window cached
and uncached generation give the same ids.

Plain torch, no Lightning.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn as nn

from gpt.layers import KVCache


def check_sampling_args(
    max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: Optional[float] = None
) -> None:
    """Refuse bad settings before any work is done."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (or None for no limit), got {top_p}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Pick one id per row from logits (B, vocab_size) -> (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy
    logits = logits.float() / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None and top_k < logits.size(-1):
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        # Nucleus sampling (Holtzman et al., 2019): keep the most likely tokens until their
        # mass reaches top_p. A token stays if the mass before it is still below top_p, so
        # the most likely token always stays.
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def generate_tokens(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield max_new_tokens ids (B, 1), one step at a time, continuing idx (B, T).

    Stop iterating to stop early (a stop string, say). use_cache falls back to
    recomputing the context for models without a KV cache.
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p)
    block_size = model.config.block_size
    if idx.size(1) == 0:
        raise ValueError("generation needs at least one token to start from")
    cache = None
    if use_cache and getattr(model, "supports_kv_cache", False):
        dtype = next(model.parameters()).dtype
        cache = KVCache(model.config, idx.size(0), device=idx.device, dtype=dtype)
    seq = idx
    pending = idx[:, -block_size:]  # what the model has not seen yet: the prompt, to prefill
    for _ in range(max_new_tokens):
        # no_grad per step, not around the loop: a generator suspended inside a `with`
        # would leave gradients off in the caller's code between steps.
        with torch.no_grad():
            if cache is None:
                logits = model(seq[:, -block_size:])[:, -1, :]
            else:
                if cache.pos + pending.size(1) > block_size:  # full: shift the context
                    cache.pos = 0
                    pending = seq[:, -(block_size // 2) :]
                logits = model(pending, cache)[:, -1, :]
            next_id = sample_next(logits, temperature, top_k, top_p, generator)
        seq = torch.cat((seq, next_id), dim=1)
        pending = next_id
        yield next_id


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Append max_new_tokens sampled ids to idx (B, T) and return (B, T + max_new_tokens)."""
    steps = generate_tokens(model, idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache)
    return torch.cat([idx, *steps], dim=1)
