"""Masked language modelling (BERT, Devlin et al., 2019): which tokens to hide and predict
in training, and filling the <|mask|> tokens of a prompt.

Plain torch, no Lightning.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from gpt.tokenizers import MASK, PAD, Tokenizer

IGNORE_INDEX = -100  # targets with this value are not scored (cross_entropy's default)


def mask_tokens(
    ids: torch.Tensor,
    mask_id: int,
    n_ordinary: int,
    prob: float = 0.15,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for one masked-LM step, from ids (B, T).

    Each ordinary token (an id below n_ordinary: never <|endoftext|> or another special
    token) that is real (attention_mask True; all without one) is selected with probability
    prob. A selected token becomes <|mask|> (80%), a random ordinary token (10%) or stays
    itself (10%): the model cannot tell which inputs are genuine, so it must represent
    every position well. The targets are the original ids at selected positions and
    IGNORE_INDEX everywhere else, padding included. At least one token is selected (if any
    can be), so the loss is never empty.
    """
    if not 0 < prob < 1:
        raise ValueError(f"mask_prob must be in (0, 1), got {prob}")
    real = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    real = real & (ids < n_ordinary)  # special tokens are never hidden nor predicted
    draw = torch.rand(ids.shape, generator=generator, device=ids.device)
    selected = (draw < prob) & real
    if not selected.any() and real.any():  # a short batch with no luck: take the real token that came closest
        selected.view(-1)[draw.masked_fill(~real, 2.0).argmin()] = True
    action = torch.rand(ids.shape, generator=generator, device=ids.device)
    random_ids = torch.randint(0, n_ordinary, ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(selected & (action < 0.8), mask_id, ids)
    inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    targets = torch.where(selected, ids, IGNORE_INDEX)
    return inputs, targets


def mask_batch(
    ids: torch.Tensor,
    tokenizer: Tokenizer,
    prob: float,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mask_tokens with the tokenizer's <|mask|>; the special tokens, which come after the
    ordinary ones, are never drawn as random replacements."""
    special = tokenizer.special_tokens
    return mask_tokens(ids, special[MASK], min(special.values()), prob, attention_mask, generator)


def fill_mask(model: nn.Module, tokenizer: Tokenizer, prompt: str | None, k: int = 5) -> dict[str, Any]:
    """A masked model's predictions for each <|mask|> of the prompt: {"completion": the
    prompt with each filled by its most likely token, "candidates": for each <|mask|> the k
    best [text, probability] pairs}."""
    if prompt is None or MASK not in prompt:
        raise ValueError(f"the prompt has no {MASK} to fill; write {MASK} where a token is to be predicted")
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt, allowed_special={MASK})], device=device)
    if ids.size(1) > model.config.block_size:
        raise ValueError(f"the prompt has {ids.size(1)} tokens; the model reads at most {model.config.block_size}")
    with torch.no_grad():
        logits = model(ids)[0].float()
    # <|pad|> and <|mask|> are never a hidden token: leave them out of the candidates.
    never = torch.tensor([i for token, i in tokenizer.special_tokens.items() if token in (PAD, MASK)], device=device)
    probs = torch.softmax(logits.index_fill(-1, never, float("-inf")), dim=-1)
    filled, candidates = ids[0].tolist(), []
    for position in (ids[0] == tokenizer.special_tokens[MASK]).nonzero().flatten().tolist():
        top = torch.topk(probs[position], min(k, probs.size(-1)))
        filled[position] = top.indices[0].item()
        pairs = zip(top.values.tolist(), top.indices.tolist())
        candidates.append([[tokenizer.decode([i]), round(p, 4)] for p, i in pairs])
    return {"completion": tokenizer.decode(filled), "candidates": candidates}


def format_fill(result: dict[str, Any]) -> str:
    """fill_mask's result as predict prints it: the filled prompt, then each mask's candidates."""
    lines = [result["completion"]]
    for n, candidates in enumerate(result["candidates"], start=1):
        lines.append(f"  {MASK} {n}: " + ", ".join(f"{text!r} {p:.3f}" for text, p in candidates))
    return "\n".join(lines) + "\n"
