"""GPTConfig: the numbers and choices that define a model, and named presets.

Names follow GPT-2 and nanoGPT: n_layer blocks, n_head attention heads, n_embd wide,
block_size tokens of context. `arch` picks a model from the teaching sequence (bigram ->
one attention head -> several heads -> transformer blocks -> GPT); the options after it
(positions, MLP, norm, biases, tying) shape the GPT and are GPT-2's by default.

GPTConfig is the one place these settings are typed and documented: the LightningModule
takes them as keyword arguments and passes them on, so `--model.n_layer` on the command
line, `n_layer:` in a YAML config and `--help` all come from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

Arch = Literal["bigram", "head", "multi_head", "blocks", "gpt"]
Pos = Literal["learned", "rope"]
Mlp = Literal["gelu", "relu", "swiglu"]
Norm = Literal["layernorm", "rmsnorm"]

ARCHS: tuple[str, ...] = Arch.__args__
CHOICES: dict[str, tuple[str, ...]] = {"arch": ARCHS, "pos": Pos.__args__, "mlp": Mlp.__args__, "norm": Norm.__args__}

# GPT-2 small: the value of every field that neither the caller nor the preset sets.
GPT2_SMALL: dict[str, Any] = dict(
    vocab_size=50257,
    block_size=1024,
    n_layer=12,
    n_head=12,
    n_embd=768,
    dropout=0.0,
    arch="gpt",
    pos="learned",
    mlp="gelu",
    norm="layernorm",
    bias=True,
    qkv_bias=None,
    tie_weights=True,
    rope_base=10000.0,
    causal=True,
    padded_vocab_multiple=1,
)

# Named sizes as data, each what it changes from GPT-2 small: OpenAI's published GPT-2
# sizes (vocab 50257, context 1024) and nanoGPT's Shakespeare "baby GPT".
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": {},
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    "baby": dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False),
}

# The options that only the GPT reads, at their GPT-2 values.
GPT_ONLY = {"pos": "learned", "mlp": "gelu", "norm": "layernorm", "causal": True, "padded_vocab_multiple": 1}


@dataclass(frozen=True)
class GPTConfig:
    """A model: a preset, and any field given beside it.

    A field left unset (None) takes the preset's value, or without a preset GPT-2 small's,
    when the config is made; from then on every field holds its value (qkv_bias may stay
    None, which means "as bias").

        GPTConfig(preset="baby", n_layer=4)    # nanoGPT's baby GPT, 4 layers deep

    Args:
        preset: A named size: gpt2, gpt2-medium, gpt2-large, gpt2-xl (OpenAI's GPT-2), or baby
            (nanoGPT's Shakespeare model: 6 layers x 384 wide, 6 heads, context 256, dropout 0.2,
            no biases). Unset: GPT-2 small.
        vocab_size: Tokens in the vocabulary (GPT-2: 50257). main.py takes it from the tokenizer.
        block_size: Longest context the model reads, in tokens (GPT-2: 1024).
        n_layer: Transformer blocks (GPT-2 small: 12).
        n_head: Attention heads per block (GPT-2 small: 12).
        n_embd: Width of the residual stream (GPT-2 small: 768).
        dropout: Dropout probability in the embeddings, attention and MLP (GPT-2: 0.0 here).
        arch: Which model: bigram, head, multi_head, blocks (the teaching sequence) or gpt.
        pos: gpt: learned position embeddings (GPT-2) or rope (rotary, LLaMA).
        mlp: gpt: gelu (GPT-2, tanh approximation), relu, or swiglu (LLaMA).
        norm: gpt: layernorm (GPT-2) or rmsnorm (LLaMA).
        bias: Biases in Linear layers and LayerNorms (GPT-2: true).
        qkv_bias: Bias on the query/key/value projection (unset: as bias).
        tie_weights: The LM head reuses the token embedding matrix (GPT-2: true).
        rope_base: RoPE's theta: wavelengths from 2 pi to about base x 2 pi (10000).
        causal: Attend to earlier positions only (next-token prediction); false: both ways
            (masked LM). The LightningModule sets it from its objective.
        padded_vocab_multiple: gpt: give the embedding and LM head a multiple of this many rows
            (nanoGPT pads GPT-2's 50257 to 50304 = 64 x 786: matmuls of a round size run faster on
            GPUs). The extra rows are never scored or sampled: the logits keep vocab_size
            columns. 1: no padding (for a char vocabulary of 65, 64 would double the LM head).
    """

    preset: str | None = None
    vocab_size: int | None = None
    block_size: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    dropout: float | None = None
    arch: Arch | None = None
    pos: Pos | None = None
    mlp: Mlp | None = None
    norm: Norm | None = None
    bias: bool | None = None
    qkv_bias: bool | None = None
    tie_weights: bool | None = None
    rope_base: float | None = None
    causal: bool | None = None
    padded_vocab_multiple: int | None = None

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known presets: {', '.join(PRESETS)}")
        for name, value in (GPT2_SMALL | PRESETS[self.preset or "gpt2"]).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: filled once, when made
        self.check()

    def check(self) -> None:
        """Refuse settings no model can be built from, naming the value."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "padded_vocab_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        gpt_options = {k: getattr(self, k) for k, default in GPT_ONLY.items() if getattr(self, k) != default}
        if self.arch != "gpt" and gpt_options:
            raise ValueError(
                f"{', '.join(f'{k}={v}' for k, v in gpt_options.items())}: options of arch 'gpt'; the teaching "
                f"model {self.arch!r} has a fixed design (see gpt/model/models.py)"
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
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and LM head: vocab_size rounded up to padded_vocab_multiple."""
        return math.ceil(self.vocab_size / self.padded_vocab_multiple) * self.padded_vocab_multiple

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


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GPTConfig))
