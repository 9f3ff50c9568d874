"""GPTConfig: the numbers and choices that define a model, and named presets.

Names follow GPT-2 and nanoGPT: n_layer blocks, n_head attention heads, n_embd wide,
block_size tokens of context. `arch` picks a model from the teaching sequence (bigram ->
one attention head -> several heads -> transformer blocks -> GPT); the options after it
(positions, MLP, norm, biases, tying) shape the GPT and are GPT-2's by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal, Optional

Arch = Literal["bigram", "head", "multi_head", "blocks", "gpt"]
Pos = Literal["learned", "rope"]
Mlp = Literal["gelu", "relu", "swiglu"]
Norm = Literal["layernorm", "rmsnorm"]

ARCHS: tuple[str, ...] = Arch.__args__
CHOICES: dict[str, tuple[str, ...]] = {"arch": ARCHS, "pos": Pos.__args__, "mlp": Mlp.__args__, "norm": Norm.__args__}

# The options that only the GPT reads, at their GPT-2 values.
GPT_DEFAULTS = {"pos": "learned", "mlp": "gelu", "norm": "layernorm", "causal": True}


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    arch: Arch = "gpt"
    pos: Pos = "learned"  # learned position embeddings (GPT-2) or rotary (RoPE, LLaMA)
    mlp: Mlp = "gelu"  # GELU with the tanh approximation, as GPT-2 was trained
    norm: Norm = "layernorm"
    bias: bool = True  # biases in Linear layers and LayerNorms, as GPT-2
    qkv_bias: Optional[bool] = None  # bias on the query/key/value projection; None: same as bias
    tie_weights: bool = True  # the LM head reuses the token embedding (Press & Wolf, 2017)
    rope_base: float = 10000.0  # RoPE's theta: wavelengths from 2*pi to about base * 2*pi
    causal: bool = True  # attend to earlier positions only (next-token prediction); False: both ways (masked LM)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        gpt_options = {k: getattr(self, k) for k, default in GPT_DEFAULTS.items() if getattr(self, k) != default}
        if self.arch != "gpt" and gpt_options:
            raise ValueError(
                f"{', '.join(f'{k}={v}' for k, v in gpt_options.items())}: options of arch 'gpt'; the teaching "
                f"model {self.arch!r} has a fixed design (see gpt/model.py)"
            )
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                "each head gets n_embd // n_head dimensions"
            )
        if self.pos == "rope" and self.head_size % 2 != 0:
            raise ValueError(
                f"RoPE rotates pairs of dimensions, so the head size must be even; n_embd {self.n_embd} / "
                f"n_head {self.n_head} = {self.head_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.rope_base <= 1:
            raise ValueError(f"rope_base must be > 1, got {self.rope_base}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def attn_bias(self) -> bool:
        """Whether the query/key/value projection has a bias."""
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def mlp_hidden(self) -> int:
        """Width of the MLP's hidden layer. SwiGLU has three matrices instead of two, so
        LLaMA shrinks it to 2/3 of 4 * n_embd (rounded up to a multiple of 64 here) to
        keep the parameter count about the same."""
        if self.mlp == "swiglu":
            return math.ceil(8 * self.n_embd / 3 / 64) * 64
        return 4 * self.n_embd


# Published GPT-2 sizes (vocab 50257, context 1024) and nanoGPT's Shakespeare "baby GPT".
PRESETS: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
    "baby": GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False),
}

FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GPTConfig))


def preset(name: Optional[str] = None, **overrides) -> GPTConfig:
    """A named preset (None: GPTConfig's defaults, GPT-2 small) with fields replaced:
    `preset("gpt2", vocab_size=65)`. Overrides that are None keep the preset's value."""
    if name is not None and name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    unknown = set(overrides) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown GPTConfig fields: {', '.join(sorted(unknown))}; known: {', '.join(FIELDS)}")
    base = PRESETS[name] if name is not None else GPTConfig()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def config_from_hparams(hparams: dict) -> GPTConfig:
    """The GPTConfig of a LitGPT checkpoint's hyper_parameters (preset plus overrides)."""
    return preset(hparams.get("preset"), **{k: hparams[k] for k in FIELDS if k in hparams})
