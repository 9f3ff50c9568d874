"""The pieces of the models: attention (one explicit head, explicit heads, fused), RoPE,
MLPs, norms, and the transformer block.

Plain torch, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt.model.config import GPTConfig

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each (T, head_size)


# ---- rotary position embeddings (Su et al., 2021), as LLaMA


def rope_cache(block_size: int, head_size: int, base: float = 10000.0, device=None) -> Rope:
    """cos and sin of the angle position * theta_i for each pair of dimensions i, for
    positions 0..block_size-1 (see rope_at)."""
    return rope_at(torch.arange(block_size, device=device), head_size, base)


def rope_at(positions: torch.Tensor, head_size: int, base: float = 10000.0) -> Rope:
    """cos and sin of the angle position * theta_i at any positions (a rolling KV cache goes
    past block_size), each (len(positions), head_size).

    theta_i = base^(-2i / head_size): the first pairs turn fast, the last ones slowly.
    The pairs are (d, d + head_size / 2), the "rotate half" layout of GPT-NeoX and
    Hugging Face's LLaMA. The angles are taken in float64: position * theta loses digits in
    float32 as positions grow, and a position's angle is then the same whichever table holds it.
    """
    device = positions.device  # MPS has no float64: its angles are taken on the CPU
    work = torch.device("cpu") if device.type == "mps" else device
    theta = base ** (-torch.arange(0, head_size, 2, device=work, dtype=torch.float64) / head_size)
    angles = torch.outer(positions.to(work, torch.float64), theta)
    angles = torch.cat((angles, angles), dim=-1)  # (T, head_size)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate each pair of dimensions of x (..., T, head_size) by its position's angle.

    Rotating queries and keys this way makes q_i . k_j depend on i and j only through
    i - j: attention sees relative positions.
    """
    cos, sin = (t.to(x.dtype) for t in rope)
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin


# ---- the KV cache: generate one token at a time without recomputing the past


class KVCache:
    """Keys and values of the positions seen so far, for every layer, in buffers of
    block_size positions: prefill writes the prompt's, then each step writes one more.
    `pos` counts the positions seen. A layer's buffers are made at its first write, in
    the dtype its keys come in (bf16 under autocast, say).

    rolling (RoPE models only; the default for them): once the buffers are full, each new
    position overwrites the oldest, a ring of the last block_size keys. That is sliding-window
    attention (Beltagy et al., 2020; Mistral's rolling buffer): one new token attends to every
    slot, in any order (softmax does not care), and RoPE keys carry their own positions, so the
    ring needs no reordering and decoding runs on past the window at no prefill cost. Learned
    positions cannot roll: a key keeps the position it was computed at, and the model has
    no embedding past block_size."""

    def __init__(self, config: GPTConfig, batch_size: int, rolling: bool | None = None):
        if rolling and config.pos != "rope":
            raise ValueError(f"a rolling KV cache needs RoPE positions, not pos={config.pos!r}")
        self.shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.keys: list[torch.Tensor | None] = [None] * config.n_layer
        self.values: list[torch.Tensor | None] = [None] * config.n_layer
        self.capacity = config.block_size
        self.rolling = config.pos == "rope" if rolling is None else rolling
        self.pos = 0

    def fits(self, T: int) -> bool:
        """Whether T more positions can be written: within the buffers, or one at a time
        into a rolling ring."""
        return self.pos + T <= self.capacity or (self.rolling and T == 1)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_head, T, head_size) after the filled positions; return all of
        this layer's keys and values so far. The model moves `pos` on after its last layer."""
        end = self.pos + k.size(2)
        if not self.fits(k.size(2)):
            raise ValueError(f"the KV cache holds {self.capacity} positions; {end} needed: re-prefill a shorter window")
        if self.keys[layer] is None:
            self.keys[layer] = k.new_zeros(self.shape)
            self.values[layer] = v.new_zeros(self.shape)
        if end > self.capacity:  # rolling: over the oldest slot; every slot is filled
            slot = self.pos % self.capacity
            self.keys[layer][:, :, slot : slot + 1] = k
            self.values[layer][:, :, slot : slot + 1] = v
            return self.keys[layer], self.values[layer]
        self.keys[layer][:, :, self.pos : end] = k
        self.values[layer][:, :, self.pos : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


# ---- which keys each query may see, and the rest of what attention needs besides x


def sdpa_mask(
    T: int, past: int, causal: bool, attention_mask: torch.Tensor | None = None, device=None
) -> tuple[torch.Tensor | None, bool]:
    """scaled_dot_product_attention's (attn_mask, is_causal) for queries at positions
    past..past+T-1 over keys 0..past+T-1.

    attention_mask (B, T), True at real tokens and False at padding (Hugging Face's
    attention_mask; no cache then): no query sees a padding key, and every row keeps its
    first, real, key. Otherwise causal attention is SDPA's is_causal at prefill; one new
    token sees every cached key (no mask); several new tokens see the cached keys and the
    new ones up to their own.
    """
    if attention_mask is not None:
        mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): broadcast over heads and queries
        if causal:
            mask = mask & torch.ones(T, T, dtype=torch.bool, device=device).tril()
        return mask, False
    if not causal:
        return None, False  # masked LM: every position sees every position
    if past == 0:
        return None, True
    if T == 1:
        return None, False
    return torch.ones(T, past + T, dtype=torch.bool, device=device).tril(past), False


@dataclass
class AttentionContext:
    """What every layer's attention needs besides x, made once per forward by the model:
    RoPE's angles for these positions, which keys each query may see, and the KV cache."""

    rope: Rope | None = None
    mask: torch.Tensor | None = None  # SDPA's attn_mask: True where a query may see a key
    is_causal: bool = True  # SDPA's is_causal: the mask is the lower triangle (no mask given then)
    cache: KVCache | None = None


# ---- attention, built up as the literature does


class Head(nn.Module):
    """One head of causal self-attention, written out: softmax(q k^T / sqrt(d)) v."""

    def __init__(self, n_embd: int, head_size: int, block_size: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        self.query = nn.Linear(n_embd, head_size, bias=bias)  # what this token looks for
        self.key = nn.Linear(n_embd, head_size, bias=bias)  # what this token offers
        self.value = nn.Linear(n_embd, head_size, bias=bias)  # what it passes on when chosen
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def attention_weights(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        """How much each position (row) takes from each earlier one (column): (B, T, T), rows sum to 1."""
        T = x.size(1)
        q, k = self.query(x), self.key(x)  # (B, T, head_size) each
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        # Scaled so that the scores have unit variance and softmax does not saturate.
        scores = q @ k.transpose(-2, -1) * k.size(-1) ** -0.5  # (B, T, T)
        scores = scores.masked_fill(~self.tril[:T, :T], float("-inf"))  # no peeking ahead
        return F.softmax(scores, dim=-1)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        weights = self.dropout(self.attention_weights(x, rope))
        return weights @ self.value(x)  # (B, T, head_size)


class MultiHeadAttention(nn.Module):
    """n_head explicit heads side by side, concatenated and projected back to n_embd.
    Causal, with no KV cache and no padding mask: the teaching models need neither."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.heads = nn.ModuleList(
            Head(config.n_embd, config.head_size, config.block_size, config.dropout, config.attn_bias)
            for _ in range(config.n_head)
        )
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def attention_weights(self, x: torch.Tensor, ctx: AttentionContext | None = None) -> torch.Tensor:
        """Every head's attention weights, (B, n_head, T, T)."""
        rope = ctx.rope if ctx is not None else None
        return torch.stack([head.attention_weights(x, rope) for head in self.heads], dim=1)

    def forward(self, x: torch.Tensor, ctx: AttentionContext | None = None) -> torch.Tensor:
        rope = ctx.rope if ctx is not None else None
        y = torch.cat([head(x, rope) for head in self.heads], dim=-1)
        return self.dropout(self.proj(y))


class SelfAttention(nn.Module):
    """The same function as MultiHeadAttention, fused: one matmul makes every head's
    queries, keys and values, and scaled_dot_product_attention runs all heads at once
    (flash attention on a GPU). Causal (a GPT) or both ways (a masked LM), as config.causal
    says. layer_idx is its place in the stack: where its keys and values go in a KV cache."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.causal = config.causal
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.attn_bias)
        # Output projection back into the residual stream.
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def qkv(self, x: torch.Tensor, ctx: AttentionContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every head's queries, keys and values, (B, n_head, T, head_size) each, RoPE applied."""
        B, T, C = x.shape
        # (B, T, 3C) -> 3 x (B, n_head, T, head_size): heads become a batch dimension. One
        # view and one permute rather than a split and three: when decoding, every op counts.
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if ctx.rope is None:
            return qkv.unbind(0)
        q, k = apply_rope(qkv[:2], ctx.rope).unbind(0)  # queries and keys rotated together: half the ops
        return q, k, qkv[2]

    def forward(self, x: torch.Tensor, ctx: AttentionContext | None = None) -> torch.Tensor:
        """x (B, T, n_embd); ctx: made by the model once per forward (without one: causal
        or not as the config says, no RoPE, no cache)."""
        ctx = ctx or AttentionContext(is_causal=self.causal)
        B, T, C = x.shape
        q, k, v = self.qkv(x, ctx)
        if ctx.cache is not None:
            k, v = ctx.cache.append(self.layer_idx, k, v)  # this layer's keys and values so far
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.mask, dropout_p=dropout_p, is_causal=ctx.is_causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # concatenate the heads
        return self.resid_dropout(self.c_proj(y))

    def attention_weights(self, x: torch.Tensor, ctx: AttentionContext | None = None) -> torch.Tensor:
        """What scaled_dot_product_attention computes before it takes the values, written
        out: softmax(q k^T / sqrt(d)) with the same mask, (B, n_head, T, T). For looking at."""
        ctx = ctx or AttentionContext(is_causal=self.causal)
        q, k, _ = self.qkv(x, ctx)
        scores = q @ k.transpose(-2, -1) * q.size(-1) ** -0.5
        T = x.size(1)
        allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril() if ctx.is_causal else ctx.mask
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return F.softmax(scores, dim=-1)


# ---- position-wise feed-forward networks and norms


class MLP(nn.Module):
    """Feed-forward network, 4x wider than the residual stream: GELU (tanh approximation,
    as GPT-2 was trained) or ReLU (the original transformer)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.act = nn.GELU(approximate="tanh") if config.mlp == "gelu" else nn.ReLU()
        self.c_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class SwiGLU(nn.Module):
    """Gated MLP (Shazeer, 2020), as LLaMA: c_proj(silu(x W_gate) * (x W_fc))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_gate = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.c_fc = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x)))


def make_mlp(config: GPTConfig) -> nn.Module:
    return SwiGLU(config) if config.mlp == "swiglu" else MLP(config)


def make_norm(config: GPTConfig) -> nn.Module:
    """LayerNorm (GPT-2) or RMSNorm (LLaMA: rescale only, no mean subtraction, no bias)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=1e-5)
    return nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)


class Block(nn.Module):
    """Transformer block, pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0, attn: nn.Module | None = None):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = attn if attn is not None else SelfAttention(config, layer_idx)
        self.ln_2 = make_norm(config)
        self.mlp = make_mlp(config)

    def forward(self, x: torch.Tensor, ctx: AttentionContext | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), ctx)  # tokens talk to each other
        x = x + self.mlp(self.ln_2(x))  # each token thinks on its own
        return x
