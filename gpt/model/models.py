"""The models, in the order the literature builds them.

    bigram      a vocab x vocab table: the next token from the current one alone
    head        + token and position embeddings, one head of causal self-attention
    multi_head  + several heads side by side, concatenated and projected
    blocks      + MLP, residual connections and LayerNorm, in a stack of n_layer blocks
                  (the model at the end of Karpathy's "Let's build GPT": ReLU, untied head)
    gpt         + GPT-2's choices: GELU, tied embeddings, GPT-2's initialisation, fused
                  attention; and the modern options RoPE, SwiGLU, RMSNorm

Every model has one forward: `model(idx, *, cache=None, attention_mask=None)` maps ids
(B, T) to logits (B, T, vocab_size), so one LightningModule trains them all and one
sampling loop draws from them all. Plain torch, no Lightning: the models can be used,
tested and exported on their own.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn

from gpt.model.config import GPTConfig
from gpt.model.layers import (
    AttentionContext,
    Block,
    Head,
    KVCache,
    MultiHeadAttention,
    Rope,
    make_norm,
    rope_at,
    rope_cache,
    sdpa_mask,
)


class LanguageModel(nn.Module):
    """What every model shares: its config, its inputs' checks, parameter and FLOP counts.

    forward(idx, *, cache=None, attention_mask=None): ids (B, T) -> logits (B, T, vocab_size).
    cache: a KVCache to continue, for models that support one (supports_kv_cache).
    attention_mask (B, T): True at real tokens, False at padding (Hugging Face's name).
    Padding comes after the real tokens, so the causal teaching models, which never look
    ahead, need no mask and ignore it.
    """

    supports_kv_cache = False  # forward(idx, cache=...) continues a sequence from a KVCache

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config

    @property
    def attention_layers(self) -> int:
        """Layers that attend over the context, for the FLOP count: one a block."""
        return self.config.n_layer

    def check_inputs(self, idx: torch.Tensor, cache: KVCache | None) -> None:
        if cache is not None and not self.supports_kv_cache:
            raise ValueError(f"arch {self.config.arch!r} keeps no KV cache; call it without one")
        if cache is not None and cache.fits(idx.size(1)):
            return  # within the cache's buffers, or one token into a rolling one
        T = idx.size(1) + (cache.pos if cache is not None else 0)
        if T > self.config.block_size:
            raise ValueError(
                f"input has {T} tokens but the model's block_size is {self.config.block_size}; "
                "crop the context to the last block_size tokens"
            )

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, each shared tensor counted once. non_embedding drops the position
        embeddings (a tied token embedding is also the LM head, so it stays), as nanoGPT
        and GPT-2 report."""
        return sum(
            p.numel() for name, p in self.named_parameters() if not (non_embedding and name.endswith("wpe.weight"))
        )

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token: 6 per weight of every matmul,
        plus attention's scores and weighted values (PaLM appendix B, nanoGPT's estimate_mfu).
        Counted from the layers' sizes, which FSDP's sharded weights do not show."""
        T = seq_len or self.config.block_size
        linears = {id(m.weight): m for m in self.modules() if isinstance(m, nn.Linear)}  # a shared one once
        matmul_weights = sum(m.in_features * m.out_features for m in linears.values())
        return 6 * matmul_weights + 12 * self.attention_layers * self.config.n_embd * T


class BigramLM(LanguageModel):
    """Row i of the table holds the logits of the token that follows token i."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)

    @property
    def attention_layers(self) -> int:
        return 0

    def forward(
        self, idx: torch.Tensor, *, cache: KVCache | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_inputs(idx, cache)
        return self.table(idx)


class HeadLM(LanguageModel):
    """arch "head": token + position embeddings, one head of causal self-attention as wide as
    n_embd, a linear LM head."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)  # what each token is
        self.wpe = nn.Embedding(config.block_size, C)  # where it is
        self.attn = self.attention(config)
        self.lm_head = nn.Linear(C, config.vocab_size)

    def attention(self, config: GPTConfig) -> nn.Module:
        return Head(config.n_embd, config.n_embd, config.block_size, config.dropout, config.attn_bias)

    @property
    def attention_layers(self) -> int:
        return 1

    def forward(
        self, idx: torch.Tensor, *, cache: KVCache | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_inputs(idx, cache)
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        return self.lm_head(self.attn(x))


class MultiHeadLM(HeadLM):
    """arch "multi_head": the same, with n_head heads side by side, concatenated and projected."""

    def attention(self, config: GPTConfig) -> nn.Module:
        return MultiHeadAttention(config)


class BlocksLM(LanguageModel):
    """arch "blocks": embeddings, n_layer blocks (explicit heads, ReLU MLP, pre-LayerNorm, residuals),
    a final LayerNorm and an untied LM head, with PyTorch's default initialisation."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        block_config = replace(config, arch="gpt", mlp="relu")  # blocks as the GPT's, with a ReLU MLP
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(block_config, attn=MultiHeadAttention(config)) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(
        self, idx: torch.Tensor, *, cache: KVCache | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_inputs(idx, cache)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device)))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GPT(LanguageModel):
    """GPT-2 (Radford et al., 2019), and with options the modern variants: RoPE instead of
    learned positions, SwiGLU instead of GELU, RMSNorm instead of LayerNorm, no biases,
    untied embeddings."""

    supports_kv_cache = True

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        # Token embeddings, with padded_vocab_size rows: the padding rows are never looked up.
        modules = dict(wte=nn.Embedding(config.padded_vocab_size, config.n_embd))
        if config.pos == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # position embeddings
        else:
            # RoPE has no weights: positions rotate the queries and keys inside attention.
            cos, sin = rope_cache(config.block_size, config.head_size, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList([Block(config, layer_idx=i) for i in range(config.n_layer)])
        modules["ln_f"] = make_norm(config)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        if config.tie_weights:
            # Weight tying (Press & Wolf, 2017): the output layer reuses the token embedding.
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale residual output projections by 1/sqrt(2 * n_layer), since each block
        # adds two of them to the residual stream and its variance would grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def rope_for(self, start: int, end: int) -> Rope:
        """RoPE's cos and sin for positions start..end-1. A rolling cache goes past block_size:
        the table then grows (to twice what is asked, so rarely), its first rows unchanged."""
        if end > self.rope_cos.size(0):
            # Outside inference mode: a table grown while sampling serves training steps after.
            with torch.inference_mode(False):
                more = torch.arange(self.rope_cos.size(0), 2 * end, device=self.rope_cos.device)
                cos, sin = rope_at(more, self.config.head_size, self.config.rope_base)
                self.rope_cos, self.rope_sin = torch.cat((self.rope_cos, cos)), torch.cat((self.rope_sin, sin))
        return self.rope_cos[start:end], self.rope_sin[start:end]

    def forward(
        self, idx: torch.Tensor, *, cache: KVCache | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """With a cache, idx continues the sequence the cache holds: its tokens take positions
        cache.pos, cache.pos + 1, ... and attend to the cached keys and values."""
        self.check_inputs(idx, cache)
        if cache is not None and attention_mask is not None:
            raise ValueError("a padding mask with a KV cache is not supported: decode padded prompts without one")
        T = idx.size(1)
        start = cache.pos if cache is not None else 0
        x = self.transformer.wte(idx)
        rope = None
        if self.config.pos == "learned":
            x = x + self.transformer.wpe(torch.arange(start, start + T, device=idx.device))
        else:
            rope = self.rope_for(start, start + T)
        x = self.transformer.drop(x)
        mask, is_causal = sdpa_mask(T, start, self.config.causal, attention_mask, idx.device)
        ctx = AttentionContext(rope, mask, is_causal, cache)  # once, for every layer
        for block in self.transformer.h:
            x = block(x, ctx)
        if cache is not None:
            cache.pos += T
        logits = self.lm_head(self.transformer.ln_f(x))
        # The padding rows' logits are dropped: the loss, sampling and scoring see real ids only.
        return logits[..., : self.config.vocab_size]


def grown_rows(weight: torch.Tensor, known: int, rows: int) -> torch.Tensor:
    """An embedding (or tied LM head) for `rows` tokens from one that knows the first `known`:
    the new tokens (special tokens added for fine-tuning) start at the mean of the known
    rows, an embedding the model already reads as an ordinary token, not at random."""
    old = weight[:known]
    new = old.mean(dim=0, keepdim=True).expand(rows - known, -1)
    return torch.cat([old, new])


MODELS: dict[str, type[LanguageModel]] = {
    "bigram": BigramLM,
    "head": HeadLM,
    "multi_head": MultiHeadLM,
    "blocks": BlocksLM,
    "gpt": GPT,
}


def build_model(config: GPTConfig) -> LanguageModel:
    """The model that config.arch names."""
    return MODELS[config.arch](config)
