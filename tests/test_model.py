import math

import pytest
import torch
import torch.nn.functional as F

from gpt.config import GPTConfig, preset
from gpt.generation import generate
from gpt.model import GPT


def tiny_config(**kwargs) -> GPTConfig:
    defaults = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    return GPTConfig(**{**defaults, **kwargs})


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
        model = GPT(preset("gpt2"))
    assert model.num_params() == 124_439_808  # the published GPT-2 small, with tying


def test_baby_gpt_parameter_count():
    with torch.device("meta"):
        model = GPT(preset("baby"))  # no biases, as nanoGPT's train_shakespeare_char
    # nanoGPT prints "number of parameters: 10.65M" (position embeddings not counted)
    assert model.num_params(non_embedding=True) == 10_646_784
    with torch.device("meta"):
        with_bias = GPT(preset("baby", bias=True))
    assert with_bias.num_params() == expected_params(preset("baby", bias=True))


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


def test_config_checks():
    with pytest.raises(ValueError, match=r"n_embd \(30\) must be divisible by n_head \(4\)"):
        tiny_config(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="unknown preset 'gpt5'; known presets: gpt2, gpt2-medium"):
        preset("gpt5")


def test_generate_runs_past_block_size_and_is_seeded():
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    prompt = torch.zeros(2, 3, dtype=torch.long)
    a = generate(model, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(5))
    b = generate(model, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(5))
    c = generate(model, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(6))
    assert a.shape == (2, 43)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_greedy_and_top_k():
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    prompt = torch.tensor([[1, 2, 3]])
    greedy = generate(model, prompt, 5, temperature=0)
    expected = model(prompt)[:, -1].argmax(-1)
    assert greedy[0, 3] == expected[0]
    # top_k=1 samples the most likely token, whatever the generator
    top1 = generate(model, prompt, 5, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(9))
    assert torch.equal(top1, greedy)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(top_k=0), "top_k must be >= 1"),
        (dict(max_new_tokens=-1), "max_new_tokens must be >= 0"),
    ],
)
def test_bad_sampling_settings(kwargs, message):
    model = GPT(tiny_config())
    args = dict(max_new_tokens=3, temperature=1.0, top_k=None) | kwargs
    with pytest.raises(ValueError, match=message):
        generate(model, torch.zeros(1, 1, dtype=torch.long), **args)
