"""gpt/model/config.py: presets, overrides, and the settings no model can be built from."""

import re
from dataclasses import replace

import pytest

from gpt.model.config import FIELDS, GPT2_SMALL, PRESETS, GPTConfig
from helpers import tiny_config


def test_config_checks():
    with pytest.raises(ValueError, match="n_layer must be a positive integer, got 0"):
        tiny_config(n_layer=0)
    with pytest.raises(ValueError, match=r"n_embd \(30\) must be divisible by n_head \(4\)"):
        tiny_config(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="unknown preset 'gpt5'; known presets: gpt2, gpt2-medium"):
        GPTConfig(preset="gpt5")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_embd=36, n_head=4, pos="rope"), "head size must be even; n_embd 36 / n_head 4 = 9"),
        (dict(arch="bigram", pos="rope"), "pos=rope: options of arch 'gpt'; the teaching model 'bigram'"),
        (dict(mlp="tanh"), "mlp must be one of gelu, relu, swiglu; got 'tanh'"),
        (dict(arch="rnn"), "arch must be one of bigram, head, multi_head, blocks, gpt"),
        (dict(padded_vocab_multiple=0), "padded_vocab_multiple must be a positive integer, got 0"),
        (dict(arch="blocks", padded_vocab_multiple=64), "padded_vocab_multiple=64: options of arch 'gpt'"),
    ],
)
def test_bad_model_settings(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_config(**kwargs)


def test_preset_overrides_and_unknown_fields():
    c = GPTConfig(preset="baby", n_layer=2, dropout=None)
    assert (c.n_layer, c.n_embd, c.dropout, c.bias) == (2, 384, 0.2, False)  # None: the preset's
    assert GPTConfig(preset="gpt2") == replace(GPTConfig(), preset="gpt2")  # GPT-2 small without a preset
    with pytest.raises(TypeError, match="n_layers"):
        GPTConfig(preset="gpt2", n_layers=3)


def test_every_field_holds_a_value_once_made():
    for name in [None, *PRESETS]:
        config = GPTConfig(preset=name)
        unset = [f for f in FIELDS if getattr(config, f) is None and f not in ("preset", "qkv_bias")]
        assert unset == [], (name, unset)
    assert set(GPT2_SMALL) == set(FIELDS) - {"preset"}  # GPT-2 small gives every field a value
    assert all(set(changes) <= set(FIELDS) for changes in PRESETS.values())


def test_presets_are_the_published_sizes():
    sizes = {
        name: (c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size)
        for name in PRESETS
        for c in [GPTConfig(preset=name)]
    }
    assert sizes == {
        "gpt2": (12, 12, 768, 1024, 50257),
        "gpt2-medium": (24, 16, 1024, 1024, 50257),
        "gpt2-large": (36, 20, 1280, 1024, 50257),
        "gpt2-xl": (48, 25, 1600, 1024, 50257),
        "baby": (6, 6, 384, 256, 65),
    }


def test_a_replaced_field_keeps_the_rest():
    c = replace(GPTConfig(preset="baby"), n_layer=3)
    assert (c.preset, c.n_layer, c.n_embd, c.dropout) == ("baby", 3, 384, 0.2)
