"""gpt/model/layers.py: attention written out and fused, RoPE, the KV cache."""

import pytest
import torch
import torch.nn as nn

from gpt.model.layers import (
    AttentionContext,
    KVCache,
    MultiHeadAttention,
    SelfAttention,
    apply_rope,
    rope_cache,
    sdpa_mask,
)
from helpers import tiny_config


def copy_heads_into_fused(mha: MultiHeadAttention, fused: SelfAttention) -> None:
    """Stack the heads' query, key and value matrices into c_attn: rows [q heads, k heads, v heads]."""
    with torch.no_grad():
        for i, name in enumerate(("query", "key", "value")):
            rows = slice(i * fused.n_embd, (i + 1) * fused.n_embd)
            fused.c_attn.weight[rows] = torch.cat([getattr(h, name).weight for h in mha.heads])
            if fused.c_attn.bias is not None:
                fused.c_attn.bias[rows] = torch.cat([getattr(h, name).bias for h in mha.heads])
        fused.c_proj.load_state_dict(mha.proj.state_dict())


@pytest.mark.parametrize("bias, pos", [(False, "learned"), (True, "learned"), (True, "rope")])
def test_explicit_heads_and_fused_attention_compute_the_same_function(bias, pos):
    torch.manual_seed(0)
    c = tiny_config(n_embd=48, n_head=4, bias=bias, pos=pos)
    mha, fused = MultiHeadAttention(c).eval(), SelfAttention(c).eval()
    for p in mha.parameters():  # biases away from zero, so that copying them is checked too
        nn.init.normal_(p, std=0.2)
    copy_heads_into_fused(mha, fused)
    x = torch.randn(3, 16, 48)
    rope = rope_cache(16, c.head_size) if pos == "rope" else None
    ctx = AttentionContext(rope=rope, is_causal=True)
    expected = mha(x, ctx)
    torch.testing.assert_close(fused(x, ctx), expected, rtol=0, atol=1e-5)
    assert expected.abs().mean() > 0.1  # not trivially equal


def test_rope_attention_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    head_size, T = 16, 64
    cos, sin = rope_cache(T, head_size)
    q, k = torch.randn(head_size), torch.randn(head_size)

    def score(i: int, j: int) -> float:
        """q placed at position i, k at position j, both rotated, then dotted."""
        qi = apply_rope(q.expand(T, head_size), (cos, sin))[i]
        kj = apply_rope(k.expand(T, head_size), (cos, sin))[j]
        return (qi @ kj).item()

    for offset in (0, 1, 5, 17):
        scores = [score(j + offset, j) for j in (0, 3, 20, 40)]
        assert max(scores) - min(scores) < 1e-4, (offset, scores)
    assert abs(score(5, 0) - score(6, 0)) > 1e-2  # but the offset itself matters
    # A rotation: norms kept, and position 0 is not rotated at all.
    rotated = apply_rope(q.expand(T, head_size), (cos, sin))
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm().expand(T), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rotated[0], q)


def test_rope_attention_is_unchanged_when_every_position_shifts():
    """The layer-level consequence: attention sees only i - j, so starting the whole
    sequence at position 40 instead of 0 gives the same output."""
    torch.manual_seed(0)
    c = tiny_config(pos="rope", n_embd=32, n_head=2, block_size=64)
    attn = SelfAttention(c).eval()
    cos, sin = rope_cache(64, c.head_size)
    x = torch.randn(2, 10, 32)
    first, later = AttentionContext(rope=(cos[:10], sin[:10])), AttentionContext(rope=(cos[40:50], sin[40:50]))
    at_0, at_40 = attn(x, first), attn(x, later)
    torch.testing.assert_close(at_40, at_0, rtol=0, atol=1e-5)
    assert (attn(x, first) - attn(x[:, torch.randperm(10)], first)).abs().max() > 1e-3


def test_cache_overflow_says_what_to_do():
    config = tiny_config()
    attn = SelfAttention(config)
    cache = KVCache(config, batch_size=1)
    cache.pos = 15
    with pytest.raises(ValueError, match="the KV cache holds 16 positions; 18 needed"):
        attn(torch.zeros(1, 3, 32), AttentionContext(cache=cache))


def test_each_layer_writes_its_own_place_in_the_cache():
    torch.manual_seed(0)
    config = tiny_config()
    cache = KVCache(config, batch_size=2)
    layers = [SelfAttention(config, layer_idx=i).eval() for i in range(config.n_layer)]
    x = torch.randn(2, 5, 32)
    for layer in layers:
        layer(x, AttentionContext(cache=cache))
    assert [k.shape for k in cache.keys] == [(2, 2, 16, 16)] * 2
    assert not torch.equal(cache.keys[0][:, :, :5], cache.keys[1][:, :, :5])  # two layers, two sets of keys
    assert cache.keys[0][:, :, 5:].abs().sum() == 0  # nothing written past the 5 positions


def test_sdpa_mask_for_prefill_decoding_chunks_and_padding():
    assert sdpa_mask(4, 0, causal=True) == (None, True)  # prefill: the lower triangle
    assert sdpa_mask(1, 7, causal=True) == (None, False)  # one new token sees every cached key
    assert sdpa_mask(3, 0, causal=False) == (None, False)  # masked LM: everything
    chunk, is_causal = sdpa_mask(2, 3, causal=True)  # two new tokens after three cached ones
    assert not is_causal and chunk.tolist() == [[True] * 4 + [False], [True] * 5]
    padded, _ = sdpa_mask(3, 0, causal=True, attention_mask=torch.tensor([[True, True, False]]))
    assert padded.shape == (1, 1, 3, 3)
    assert padded[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
