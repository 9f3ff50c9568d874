"""Masked language modelling (BERT, Devlin et al., 2019): which tokens to hide and predict.

Plain torch, no Lightning.
"""

from __future__ import annotations

from typing import Optional

import torch

IGNORE_INDEX = -100  # targets with this value are not scored (cross_entropy's default)


def mask_tokens(
    ids: torch.Tensor,
    mask_id: int,
    n_ordinary: int,
    prob: float = 0.15,
    real: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for one masked-LM step, from ids (B, T).

    Each real token is selected with probability prob. A selected token becomes <|mask|>
    (80%), a random ordinary token (10%: ids below n_ordinary, never a special token) or
    stays itself (10%): the model cannot tell which inputs are genuine, so it must
    represent every position well. The targets are the original ids at selected positions
    and IGNORE_INDEX everywhere else, padding included. At least one token is selected, so
    the loss is never empty.
    """
    if not 0 < prob < 1:
        raise ValueError(f"mask_prob must be in (0, 1), got {prob}")
    real = torch.ones_like(ids, dtype=torch.bool) if real is None else real
    draw = torch.rand(ids.shape, generator=generator, device=ids.device)
    selected = (draw < prob) & real
    if not selected.any():  # a short batch with no luck: take the real token that came closest
        selected.view(-1)[draw.masked_fill(~real, 2.0).argmin()] = True
    action = torch.rand(ids.shape, generator=generator, device=ids.device)
    random_ids = torch.randint(0, n_ordinary, ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(selected & (action < 0.8), mask_id, ids)
    inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    targets = torch.where(selected, ids, IGNORE_INDEX)
    return inputs, targets
