"""What a model has learned, as pictures: the attention maps of every head, and labels for
the token embeddings in TensorBoard's projector.

    maps = attention_maps(model, idx)        # (n_layer, n_head, T, T), rows sum to 1
    image = attention_image(maps[0])         # (3, H, W) uint8: layer 0's heads side by side

Plain torch, no Lightning.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt.model.layers import MultiHeadAttention
from gpt.tokenizers import Tokenizer

# A dark-to-bright ramp (black, purple, orange, pale yellow, as matplotlib's "magma"):
# small weights fade into the background, the few large ones stand out.
RAMP = torch.tensor([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]]) / 255.0
GAP = 2  # pixels between heads
MAX_PROMPT_TOKENS = 48  # a map's side: more rows than this are too small to read


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that mix positions, in order: one per layer (a teaching model's heads
    count as their MultiHeadAttention's, not as layers of their own)."""
    found = [m for m in model.modules() if hasattr(m, "attention_weights")]
    inner = {id(h) for m in found if isinstance(m, MultiHeadAttention) for h in m.heads}
    return [m for m in found if id(m) not in inner]


@torch.no_grad()
def attention_maps(model: nn.Module, idx: torch.Tensor) -> torch.Tensor | None:
    """The attention weights of every head of every layer for one sequence idx (1, T):
    (n_layer, n_head, T, T), row i the weights query i gives keys 0..T-1. None for a model
    without attention (bigram). Computed in eval mode (no dropout), the model left as it was."""
    modules = attention_modules(model)
    if not modules:
        return None
    weights: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple) -> None:  # sees the inputs each layer's attention gets
        w = module.attention_weights(*args)
        weights.append(w if w.dim() == 4 else w.unsqueeze(1))  # one Head: (B, T, T)

    hooks = [m.register_forward_pre_hook(keep) for m in modules]
    was_training = model.training
    try:
        model.eval()
        model(idx)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return torch.stack([w[0] for w in weights]).float().cpu()


def colorize(x: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1], (H, W), to RGB (3, H, W) along RAMP."""
    position = x.clamp(0, 1) * (len(RAMP) - 1)
    low = position.floor().long().clamp(max=len(RAMP) - 2)
    frac = (position - low).unsqueeze(-1)
    rgb = RAMP[low] * (1 - frac) + RAMP[low + 1] * frac  # (H, W, 3)
    return rgb.permute(2, 0, 1)


def attention_image(layer: torch.Tensor, pixels: int = 160) -> torch.Tensor:
    """One layer's maps (n_head, T, T) as one uint8 image (3, H, W): heads left to right,
    each scaled up (nearest pixel) to about `pixels` square, white gaps between them.
    Each map is shown as weights (0 dark, 1 bright), not rescaled per head, so heads compare."""
    n_head, T, _ = layer.shape
    scale = max(1, pixels // T)
    side = T * scale
    canvas = torch.ones(3, side, n_head * side + (n_head - 1) * GAP)
    for h in range(n_head):
        big = F.interpolate(layer[h][None, None], scale_factor=scale, mode="nearest")[0, 0]
        x0 = h * (side + GAP)
        canvas[:, :, x0 : x0 + side] = colorize(big)
    return (canvas * 255).round().to(torch.uint8)


def describe_tokens(tokenizer: Tokenizer, ids: list[int]) -> str:
    """The tokens of a prompt, numbered as the rows and columns of its attention maps."""
    return " ".join(f"{i}:{token_label(tokenizer, t)}" for i, t in enumerate(ids))


def token_label(tokenizer: Tokenizer, token_id: int) -> str:
    """A token as one short visible string: whitespace spelled out (a newline as \\n, a space
    as ␣), so that labels survive TensorBoard's one-label-a-line files."""
    text = tokenizer.decode([token_id])
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace(" ", "␣") or "∅"
