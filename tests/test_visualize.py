"""gpt/eval/visualize.py: attention maps are the weights attention really uses, and pictures of them."""

import pytest
import torch

from gpt.eval.visualize import attention_image, attention_maps, attention_modules, describe_tokens, token_label
from gpt.model.config import GPTConfig
from gpt.model.layers import AttentionContext, rope_cache
from gpt.model.models import build_model
from gpt.tokenizers import CharTokenizer

SMALL = dict(vocab_size=20, n_layer=2, n_head=4, n_embd=32, block_size=16, dropout=0.1)


@pytest.mark.parametrize(
    "arch, options",
    [("gpt", {}), ("gpt", {"pos": "rope"}), ("gpt", {"causal": False}), ("blocks", {}), ("multi_head", {})],
)
def test_the_maps_are_the_weights_attention_applies(arch, options):
    torch.manual_seed(0)
    model = build_model(GPTConfig(arch=arch, **SMALL, **options))
    model.train()  # attention_maps must turn dropout off, and leave the mode as it was
    idx = torch.randint(0, 20, (1, 10))
    maps = attention_maps(model, idx)
    n_layer = 1 if arch == "multi_head" else 2
    assert maps.shape == (n_layer, 4, 10, 10) and model.training
    torch.testing.assert_close(maps.sum(-1), torch.ones(n_layer, 4, 10))  # each row a distribution
    if options.get("causal", True):
        assert (maps.triu(1) == 0).all()  # no token looks ahead
    else:
        assert (maps.triu(1) > 0).any()
    # The first layer's weights times its values give what its attention module computes.
    first = attention_modules(model)[0]
    x = torch.randn(1, 10, 32)
    first.eval()
    if arch == "gpt":
        ctx = AttentionContext(is_causal=options.get("causal", True))
        if options.get("pos") == "rope":
            ctx.rope = tuple(t[:10] for t in rope_cache(16, 8))
        q, k, v = first.qkv(x, ctx)
        y = (first.attention_weights(x, ctx) @ v).transpose(1, 2).reshape(1, 10, 32)
        torch.testing.assert_close(first.c_proj(y), first(x, ctx))
    else:
        heads = [(w @ h.value(x)) for w, h in zip(first.attention_weights(x).unbind(1), first.heads)]
        torch.testing.assert_close(first.proj(torch.cat(heads, dim=-1)), first(x))


def test_a_model_without_attention_has_no_maps():
    assert (
        attention_maps(build_model(GPTConfig(arch="bigram", vocab_size=20, block_size=8)), torch.zeros(1, 4).long())
        is None
    )


def test_one_head_is_one_map():
    model = build_model(GPTConfig(arch="head", vocab_size=20, n_head=1, n_embd=16, block_size=8))
    assert attention_maps(model, torch.zeros(1, 5).long()).shape == (1, 1, 5, 5)


def test_the_image_puts_heads_side_by_side():
    layer = torch.zeros(3, 8, 8)
    layer[1, 2, 0] = 1.0  # head 1: token 2 looks only at token 0
    image = attention_image(layer, pixels=80)  # 8 positions x 10 pixels
    assert image.shape == (3, 80, 3 * 80 + 2 * 2) and image.dtype == torch.uint8
    assert (image[:, :, 80:82] == 255).all()  # a white gap after head 0
    bright = image[:, 25, 82 + 5]  # head 1, row 2, column 0
    dark = image[:, 25, 82 + 15]  # head 1, row 2, column 1
    assert bright.tolist() == [252, 253, 191] and dark.tolist() == [0, 0, 4]  # the ramp's ends


def test_token_labels_spell_out_whitespace():
    tokenizer = CharTokenizer("\n ab\\")
    assert [token_label(tokenizer, i) for i in range(5)] == ["\\n", "␣", "a", "b", "\\\\"]
    assert describe_tokens(tokenizer, tokenizer.encode("a b\n")) == "0:a 1:␣ 2:b 3:\\n"
