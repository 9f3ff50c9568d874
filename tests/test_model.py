"""gpt/model/models.py: the model family from bigram to GPT-2, its options, parameter and FLOP
counts, padding and bidirectional attention."""

import inspect
import itertools
import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt.model.config import ARCHS, GPTConfig
from gpt.model.layers import KVCache, SwiGLU
from gpt.model.models import GPT, build_model
from helpers import tiny_config


def test_logits_shape():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    assert model(torch.randint(0, 50, (3, 16))).shape == (3, 16, 50)


def test_causal_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    idx = torch.randint(0, 50, (2, 16))
    t = 7
    changed = idx.clone()
    changed[:, t + 1 :] = torch.randint(0, 50, (2, 16 - t - 1))
    assert not torch.equal(idx, changed)
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().max() > 1e-3  # and the future does see them


def test_weights_are_tied():
    model = GPT(tiny_config())
    assert model.lm_head.weight is model.transformer.wte.weight


def expected_params(c: GPTConfig) -> int:
    """Count by hand: embeddings, then per block 2 LayerNorms, attention, MLP; final LayerNorm."""
    V, T, C, L = c.vocab_size, c.block_size, c.n_embd, c.n_layer
    per_block = 2 * (2 * C) + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return V * C + T * C + L * per_block + 2 * C


def test_parameter_count_by_hand():
    c = tiny_config()
    assert GPT(c).num_params() == expected_params(c)
    assert GPT(c).num_params(non_embedding=True) == expected_params(c) - c.block_size * c.n_embd


def test_gpt2_124m_parameter_count():
    with torch.device("meta"):  # count without allocating memory
        model = GPT(GPTConfig(preset="gpt2"))
    assert model.num_params() == 124_439_808  # the published GPT-2 small, with tying


def test_baby_gpt_parameter_count():
    with torch.device("meta"):
        model = GPT(GPTConfig(preset="baby"))  # no biases, as nanoGPT's train_shakespeare_char
    # nanoGPT prints "number of parameters: 10.65M" (position embeddings not counted)
    assert model.num_params(non_embedding=True) == 10_646_784
    with torch.device("meta"):
        with_bias = GPT(GPTConfig(preset="baby", bias=True))
    assert with_bias.num_params() == expected_params(GPTConfig(preset="baby", bias=True))


def test_gpt2_init():
    torch.manual_seed(0)
    c = tiny_config(n_embd=128, n_layer=4)
    model = GPT(c)
    assert model.transformer.h[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    proj_std = 0.02 / math.sqrt(2 * c.n_layer)
    assert model.transformer.h[0].mlp.c_proj.weight.std().item() == pytest.approx(proj_std, rel=0.05)
    assert model.transformer.h[0].attn.c_proj.weight.std().item() == pytest.approx(proj_std, rel=0.05)
    assert model.transformer.h[0].attn.c_attn.bias.abs().max().item() == 0.0


def test_untrained_loss_is_ln_vocab_size():
    torch.manual_seed(0)
    c = tiny_config(vocab_size=65, block_size=64)
    model = GPT(c)
    idx = torch.randint(0, 65, (8, 64))
    loss = F.cross_entropy(model(idx).flatten(0, 1), torch.randint(0, 65, (8 * 64,)))
    assert loss.item() == pytest.approx(math.log(65), abs=0.05)


def test_input_longer_than_block_size_is_refused():
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match="input has 17 tokens but the model's block_size is 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    cache = KVCache(model.config, batch_size=1)
    cache.pos = 14
    with pytest.raises(ValueError, match="input has 17 tokens but the model's block_size is 16"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)  # counting the cached positions


@pytest.mark.parametrize("arch", ARCHS)
def test_one_forward_signature_with_the_cache_keyword_only(arch):
    model = build_model(tiny_config(arch=arch))
    parameters = inspect.signature(model.forward).parameters
    assert list(parameters) == ["idx", "cache", "attention_mask"]
    assert parameters["cache"].kind == parameters["attention_mask"].kind == inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError):
        model(torch.zeros(1, 4, dtype=torch.long), KVCache(model.config, 1))  # the cache is never positional
    if not model.supports_kv_cache:
        with pytest.raises(ValueError, match=f"arch '{arch}' keeps no KV cache"):
            model(torch.zeros(1, 4, dtype=torch.long), cache=KVCache(model.config, 1))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_maps_ids_to_logits_causally(arch):
    torch.manual_seed(0)
    model = build_model(tiny_config(arch=arch)).eval()
    idx = torch.randint(0, 50, (2, 16))
    changed = idx.clone()
    changed[:, 8:] = (idx[:, 8:] + 1) % 50
    a, b = model(idx), model(changed)
    assert a.shape == (2, 16, 50)
    torch.testing.assert_close(a[:, :8], b[:, :8], rtol=0, atol=1e-6)  # the past never sees the future
    assert (a[:, 8:] - b[:, 8:]).abs().max() > 1e-3


def test_each_arch_builds_the_class_of_its_name():
    names = {arch: type(build_model(tiny_config(arch=arch))).__name__ for arch in ARCHS}
    assert names == {
        "bigram": "BigramLM",
        "head": "HeadLM",
        "multi_head": "MultiHeadLM",
        "blocks": "BlocksLM",
        "gpt": "GPT",
    }


def test_bigram_is_a_table_lookup():
    model = build_model(tiny_config(arch="bigram"))
    assert model.num_params() == 50 * 50
    idx = torch.tensor([[3, 7, 3]])
    logits = model(idx)
    assert torch.equal(logits[0, 0], model.table.weight[3]) and torch.equal(logits[0, 2], model.table.weight[3])


def teaching_params(c: GPTConfig) -> dict[str, int]:
    """Counted by hand from the class docstrings."""
    V, T, C, L = c.vocab_size, c.block_size, c.n_embd, c.n_layer
    embeddings_and_head = V * C + T * C + C * V + V
    multi_head = 3 * C * C + C * C + C  # n_head heads of q, k, v (no bias) + projection
    block = 2 * (2 * C) + multi_head + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return {
        "bigram": V * V,
        "head": embeddings_and_head + 3 * C * C,
        "multi_head": embeddings_and_head + multi_head,
        "blocks": embeddings_and_head + L * block + 2 * C,
    }


@pytest.mark.parametrize("arch", ["bigram", "head", "multi_head", "blocks"])
def test_teaching_model_parameter_counts_by_hand(arch):
    c = tiny_config(arch=arch, qkv_bias=False)
    assert build_model(c).num_params() == teaching_params(c)[arch]


OPTIONS = list(
    itertools.product(
        ["learned", "rope"],
        ["gelu", "relu", "swiglu"],
        ["layernorm", "rmsnorm"],
        [True, False],
        [None, True, False],
        [True, False],
        [0.0, 0.1],
    )
)


@pytest.mark.parametrize("pos, mlp, norm, bias, qkv_bias, tie_weights, dropout", OPTIONS)
def test_every_option_combination_trains_every_weight_and_has_the_counted_parameters(
    pos, mlp, norm, bias, qkv_bias, tie_weights, dropout
):
    torch.manual_seed(0)
    c = GPTConfig(
        vocab_size=20,
        block_size=8,
        n_layer=2,
        n_head=2,
        n_embd=16,
        dropout=dropout,
        pos=pos,
        mlp=mlp,
        norm=norm,
        bias=bias,
        qkv_bias=qkv_bias,
        tie_weights=tie_weights,
    )
    model = GPT(c)
    idx = torch.randint(0, 20, (2, 8))
    loss = F.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
    loss.backward()
    assert math.isfinite(loss.item())
    names = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert names == []  # every weight learns
    assert model.num_params() == expected_gpt_params(c)


def expected_gpt_params(c: GPTConfig) -> int:
    """Count any option combination by hand."""
    V, T, C, L, H = c.vocab_size, c.block_size, c.n_embd, c.n_layer, c.mlp_hidden
    b = 1 if c.bias else 0
    norm = C + (C * b if c.norm == "layernorm" else 0)
    attn = C * 3 * C + (3 * C if c.attn_bias else 0) + C * C + C * b
    mlp = (3 if c.mlp == "swiglu" else 2) * C * H + (2 * H if c.mlp == "swiglu" else H) * b + C * b
    embeddings = V * C + (T * C if c.pos == "learned" else 0) + (0 if c.tie_weights else V * C)
    return embeddings + L * (2 * norm + attn + mlp) + norm


def test_options_change_the_model_as_named():
    c = GPTConfig(
        vocab_size=20,
        block_size=8,
        n_layer=1,
        n_head=2,
        n_embd=96,
        pos="rope",
        mlp="swiglu",
        norm="rmsnorm",
        tie_weights=False,
    )
    model = GPT(c)
    assert "wpe" not in model.transformer and model.lm_head.weight is not model.transformer.wte.weight
    assert isinstance(model.transformer.h[0].mlp, SwiGLU) and c.mlp_hidden == 256  # 8/3 * 96, to a multiple of 64
    assert isinstance(model.transformer.ln_f, nn.RMSNorm)
    assert not any(k.startswith("rope") for k in model.state_dict())  # computed, not saved
    assert GPT(replace(c, qkv_bias=False)).transformer.h[0].attn.c_attn.bias is None
    assert GPT(replace(c, qkv_bias=True, bias=False)).transformer.h[0].attn.c_attn.bias is not None


def test_gpt2_without_tying_and_qkv_bias_matches_the_published_count():
    with torch.device("meta"):
        model = GPT(GPTConfig(preset="gpt2", tie_weights=False, qkv_bias=False))
    assert model.num_params() == 163_009_536


def test_flops_per_token():
    c = tiny_config(arch="head", qkv_bias=False)
    V, C, T = c.vocab_size, c.n_embd, c.block_size
    assert build_model(c).flops_per_token() == 6 * (3 * C * C + C * V) + 12 * C * T  # q, k, v, LM head; attention
    assert build_model(tiny_config(arch="bigram")).flops_per_token() == 0  # a lookup, no matmul
    with torch.device("meta"):
        gpt2 = GPT(GPTConfig(preset="gpt2"))
    # nanoGPT's estimate, 6 N + 12 L C T, counts biases and norms in N too: 0.1% apart.
    nanogpt = 6 * gpt2.num_params(non_embedding=True) + 12 * 12 * 768 * 1024
    assert gpt2.flops_per_token() == pytest.approx(nanogpt, rel=2e-3)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_padding_never_changes_the_real_positions(causal, pos):
    torch.manual_seed(0)
    model = GPT(tiny_config(causal=causal, pos=pos)).eval()
    short, long = torch.randint(0, 50, (1, 5)), torch.randint(0, 50, (1, 12))
    batch = torch.full((2, 12), 7)  # 7 stands for <|pad|>: any id, it must not matter
    batch[0, :5], batch[1] = short[0], long[0]
    attention_mask = torch.zeros(2, 12, dtype=torch.bool)
    attention_mask[0, :5], attention_mask[1] = True, True
    with torch.no_grad():
        padded = model(batch, attention_mask=attention_mask)
        torch.testing.assert_close(padded[0, :5], model(short)[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(padded[1], model(long)[0], rtol=0, atol=1e-5)
        other_pad = batch.clone()
        other_pad[0, 5:] = 3
        torch.testing.assert_close(
            model(other_pad, attention_mask=attention_mask)[0, :5], padded[0, :5], rtol=0, atol=1e-5
        )
        # without the mask a bidirectional model would see the padding
        if not causal:
            assert (model(batch)[0, :5] - padded[0, :5]).abs().max() > 1e-3


def test_bidirectional_attention_sees_the_future():
    torch.manual_seed(0)
    model = GPT(tiny_config(causal=False)).eval()
    idx = torch.randint(0, 50, (1, 16))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 50
    assert (model(idx)[0, 0] - model(changed)[0, 0]).abs().max() > 1e-3  # the first position sees the last


def test_a_padded_vocabulary_has_padded_rows_but_real_logits_only():
    torch.manual_seed(0)
    for tie in (True, False):
        model = GPT(tiny_config(vocab_size=50, padded_vocab_multiple=64, tie_weights=tie))
        assert model.config.padded_vocab_size == 64
        assert model.transformer.wte.weight.shape == (64, 32) and model.lm_head.weight.shape == (64, 32)
        assert model.num_params() == GPT(tiny_config(tie_weights=tie)).num_params() + 14 * 32 * (1 if tie else 2)
        assert model(torch.randint(0, 50, (3, 16))).shape == (3, 16, 50)  # the loss sees real ids only
    assert tiny_config(vocab_size=64, padded_vocab_multiple=64).padded_vocab_size == 64  # a multiple already


def test_sampling_never_draws_a_padding_id():
    from gpt.model.generation import generate

    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=50, padded_vocab_multiple=64, tie_weights=False)).eval()
    with torch.no_grad():
        model.lm_head.weight[50:] = 100.0  # padding rows that would win every draw if they were sampled
    out = generate(model, torch.zeros(4, 1, dtype=torch.long), 20, generator=torch.Generator().manual_seed(0))
    assert out.max() < 50
    for cache in (True, False):
        greedy = generate(model, torch.zeros(1, 1, dtype=torch.long), 10, temperature=0, use_cache=cache)
        assert greedy.max() < 50
