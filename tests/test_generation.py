"""The sampling loop: the KV cache gives the same ids as recomputing, past the window too,
and the sampling controls do what they say."""

import io
import re

import pytest
import torch
import torch.nn as nn

from gpt.model.config import GPTConfig
from gpt.model.generation import (
    SEPARATOR,
    SamplingSettings,
    complete,
    complete_batch,
    generate,
    generate_tokens,
    sample_next,
    start_ids,
)
from gpt.model.layers import AttentionContext, KVCache, rope_cache
from gpt.model.models import GPT, build_model
from gpt.tokenizers import ENDOFTEXT, BPETokenizer, CharTokenizer
from gpt.tokenizers.bpe import SPLIT_PATTERNS
from helpers import noisy_gpt, smallest_config, tiny_config

BLOCK = 16
FIFTY_CHARS = "".join(chr(65 + i) for i in range(50))  # a character for each id of tiny()'s vocabulary


def tiny(pos: str = "learned", **kwargs) -> GPT:
    return noisy_gpt(block_size=BLOCK, pos=pos, **kwargs)


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("prompt_len", [1, 4, 9, 15])
def test_cached_greedy_equals_recomputing(pos, prompt_len):
    model = tiny(pos)
    prompt = torch.randint(0, 50, (3, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    n = BLOCK - prompt_len  # up to the end of the window
    cached = generate(model, prompt, n, temperature=0, use_cache=True)
    recomputed = generate(model, prompt, n, temperature=0, use_cache=False)
    assert cached.shape == (3, BLOCK)
    assert torch.equal(cached, recomputed)
    if n > 5:
        assert len(set(cached[:, prompt_len:].flatten().tolist())) > 5  # not one id repeated


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_cached_sampling_with_a_seed_equals_recomputing(pos):
    model = tiny(pos)
    prompt = torch.randint(0, 50, (4, 3), generator=torch.Generator().manual_seed(0))
    runs = [
        generate(
            model,
            prompt,
            13,
            temperature=1.0,
            top_k=20,
            top_p=0.9,
            generator=torch.Generator().manual_seed(7),
            use_cache=use_cache,
        )
        for use_cache in (True, False)
    ]
    assert torch.equal(runs[0], runs[1])
    other_seed = generate(model, prompt, 13, temperature=1.0, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0], other_seed)


def test_prefill_in_chunks_equals_one_forward():
    """Tokens appended to a cache several at a time see the cached ones and each other
    causally: the logits are the full forward's."""
    model = tiny()
    idx = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(3))
    cache = KVCache(model.config, batch_size=2)
    with torch.no_grad():
        full = model(idx)
        chunks = [model(idx[:, a:b], cache=cache) for a, b in ((0, 5), (5, 9), (9, 10), (10, 12))]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-4)  # logits up to ~30
    assert cache.pos == 12


def shifted_reference(model: GPT, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy decoding by recomputing, over the windows the cache documents: the context
    grows to block_size, then restarts from the last block_size // 2 tokens."""
    seq, start = prompt[:, -BLOCK:], 0
    with torch.no_grad():
        for _ in range(n):
            if seq.size(1) - start > BLOCK:
                start = seq.size(1) - BLOCK // 2
            next_id = model(seq[:, start:])[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat((seq, next_id), dim=1)
    return seq


def sliding_window_logits(model: GPT, seq: torch.Tensor) -> torch.Tensor:
    """Every position's logits when, at every layer, each query sees the block_size latest
    keys (its own included), RoPE at absolute positions: sliding-window attention, computed
    over the whole sequence at once. What a rolling cache computes one token at a time."""
    S, head_size = seq.size(1), model.config.head_size
    i = torch.arange(S)
    band = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < BLOCK)  # (query, key)
    ctx = AttentionContext(rope_cache(S, head_size, model.config.rope_base), band, is_causal=False)
    with torch.no_grad():
        x = model.transformer.wte(seq)
        for block in model.transformer.h:
            x = block(x, ctx)
        return model.lm_head(model.transformer.ln_f(x))


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_generation_runs_to_three_windows(pos):
    model = tiny(pos)
    prompt = torch.randint(0, 50, (2, 3), generator=torch.Generator().manual_seed(1))
    n = 3 * BLOCK
    cached = generate(model, prompt, n, temperature=0)
    assert cached.shape == (2, 3 + n)
    if pos == "learned":
        assert torch.equal(cached, shifted_reference(model, prompt, n))  # the documented windows, exactly
    else:  # the cache rolls: each greedy id is the argmax of sliding-window attention over all before it
        logits = sliding_window_logits(model, cached[:, :-1])
        assert torch.equal(logits[:, 2:].argmax(-1), cached[:, 3:])
        assert not torch.equal(cached, shifted_reference(model, prompt, n))  # not a context shift
    # Without the cache the model sees exactly the last block_size tokens at every step.
    recomputed = generate(model, prompt, n, temperature=0, use_cache=False)
    seq = prompt
    with torch.no_grad():
        for _ in range(n):
            seq = torch.cat((seq, model(seq[:, -BLOCK:])[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(recomputed, seq)
    assert torch.equal(cached[:, : 3 + BLOCK - 3], recomputed[:, : 3 + BLOCK - 3])  # identical within the window


def test_a_rolling_cache_overwrites_the_oldest_slot_one_token_at_a_time():
    model = tiny("rope")
    idx = torch.randint(0, 50, (1, BLOCK + 3), generator=torch.Generator().manual_seed(4))
    cache = KVCache(model.config, batch_size=1)
    assert cache.rolling and not KVCache(tiny().config, 1).rolling  # RoPE rolls, learned positions cannot
    with torch.no_grad():
        model(idx[:, :BLOCK], cache=cache)
        before = cache.keys[0].clone()
        for t in range(BLOCK, BLOCK + 3):
            model(idx[:, t : t + 1], cache=cache)
        with pytest.raises(ValueError, match="input has 21 tokens but the model.s block_size is 16"):
            model(idx[:, :2], cache=cache)  # several tokens past the window: no ring for a prefill
    assert cache.pos == BLOCK + 3
    changed = (cache.keys[0] != before).any(-1).any(1)[0]  # (slot,)
    assert changed.tolist() == [True] * 3 + [False] * (BLOCK - 3)  # the three oldest slots, nothing else
    with pytest.raises(ValueError, match="a rolling KV cache needs RoPE positions, not pos='learned'"):
        KVCache(tiny().config, 1, rolling=True)


def test_a_rope_model_trains_after_sampling_past_its_window():
    """Sampling past the window grows RoPE's table under inference mode; a training step
    after it (a sample during fit) must still be able to save it for backward."""
    model = tiny("rope")
    generate(model, torch.zeros(1, 1, dtype=torch.long), 2 * BLOCK, temperature=0)
    assert model.rope_cos.size(0) > BLOCK and not model.rope_cos.is_inference()
    model.train()
    model(torch.zeros(2, BLOCK, dtype=torch.long)).square().mean().backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad.abs().sum() > 0


def test_a_prompt_longer_than_the_window_keeps_its_end():
    model = tiny()
    prompt = torch.randint(0, 50, (1, 40), generator=torch.Generator().manual_seed(2))
    out = generate(model, prompt, 5, temperature=0)
    assert torch.equal(out[:, :40], prompt)
    assert torch.equal(out[:, 40:], shifted_reference(model, prompt, 5)[:, BLOCK:])


def test_models_without_a_cache_recompute():
    torch.manual_seed(0)
    model = build_model(tiny_config(block_size=BLOCK, n_layer=1, n_embd=16, arch="blocks"))
    prompt = torch.zeros(1, 2, dtype=torch.long)
    assert torch.equal(
        generate(model.eval(), prompt, 30, temperature=0), generate(model, prompt, 30, temperature=0, use_cache=False)
    )


def test_stopping_early_is_stopping_iterating():
    model = tiny()
    steps = generate_tokens(model, torch.zeros(2, 1, dtype=torch.long), 100, temperature=0)
    first = [next(steps) for _ in range(3)]
    assert [t.shape for t in first] == [(2, 1)] * 3
    assert torch.is_grad_enabled()  # the suspended loop leaves nothing switched off


def test_generate_is_seeded_and_runs_past_block_size():
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    prompt = torch.zeros(2, 3, dtype=torch.long)
    a = generate(model, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(5))
    b = generate(model, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(5))
    c = generate(model, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(6))
    assert a.shape == (2, 43)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_greedy_is_the_most_likely_token_and_top_k_1_is_greedy():
    model = tiny()
    prompt = torch.tensor([[1, 2, 3]])
    greedy = generate(model, prompt, 5, temperature=0)
    with torch.no_grad():
        assert greedy[0, 3] == model(prompt)[0, -1].argmax()
    top1 = generate(model, prompt, 5, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(9))
    assert torch.equal(top1, greedy)  # whatever the generator


# ---- the sampling controls


def draw(logits: torch.Tensor, n: int = 4000, **kwargs) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.cat([sample_next(logits, generator=generator, **kwargs) for _ in range(n)]).flatten()


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    counts = torch.bincount(draw(logits, top_p=0.8), minlength=4)
    assert counts[2:].sum() == 0  # 0.5 + 0.3 reaches 0.8: the rest never drawn
    assert counts[0] / counts[:2].sum() == pytest.approx(0.5 / 0.8, abs=0.03)  # renormalised
    assert torch.bincount(draw(logits, top_p=0.81), minlength=4)[2] > 0  # one more token needed
    assert set(draw(logits, n=200, top_p=0.01).tolist()) == {0}  # the most likely always stays
    assert torch.bincount(draw(logits, top_p=1.0), minlength=4)[3] > 0


def test_temperature_and_top_k():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert set(draw(logits, n=500, top_k=2).tolist()) == {0, 1}
    assert set(draw(logits, n=50, temperature=0).tolist()) == {0}
    cold, hot = draw(logits, temperature=0.5), draw(logits, temperature=2.0)
    assert (cold == 0).float().mean() > (hot == 0).float().mean() + 0.2


# ---- text: stop strings, the end-of-text token, streaming


class Scripted(nn.Module):
    """A stand-in model that writes `script` (ids) after any prompt of prompt_len tokens."""

    def __init__(self, script: list[int], prompt_len: int, vocab_size: int):
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=2)
        self.script, self.prompt_len = script, prompt_len
        self.device_anchor = nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        logits = torch.full((B, T, self.config.vocab_size), -1e9)
        logits[:, -1, self.script[T - self.prompt_len]] = 0.0
        return logits


def run(tokenizer, script_text: str, prompt: str = "a", **settings):
    script = tokenizer.encode(script_text, allowed_special="all") + [0] * 20
    model = Scripted(script, len(tokenizer.encode(prompt)), tokenizer.vocab_size)
    pieces = []
    (result,) = complete_batch(
        model,
        tokenizer,
        [prompt],
        SamplingSettings(temperature=0, **settings),
        on_text=lambda row, text: pieces.append(text),
    )
    return result, pieces


def test_a_stop_string_ends_the_sample_before_it():
    tok = CharTokenizer("ab\nc")
    result, pieces = run(tok, "ab\nb\n\nccc", stop=("\n\n", "zz"), max_new_tokens=9)
    assert (result.text, result.finish) == ("ab\nb", "stop")
    assert "".join(pieces) == "ab\nb"  # the "\n" that began "\n\n" was held back, never printed
    result, _ = run(tok, "ab\nb\n\nccc", max_new_tokens=9)
    assert (result.text, result.finish) == ("ab\nb\n\nccc", "length")


def test_the_end_of_text_token_ends_the_sample():
    tok = CharTokenizer("abc", special_tokens=[ENDOFTEXT])
    result, pieces = run(tok, "abc<|endoftext|>cba", max_new_tokens=8)
    assert (result.text, result.finish) == ("abc", "eot")
    result, _ = run(tok, "abc<|endoftext|>cba", max_new_tokens=7, stop_at_eot=False)
    assert result.text == "abc<|endoftext|>cba"


def test_streamed_pieces_are_final_even_inside_a_character():
    tok = BPETokenizer([], SPLIT_PATTERNS["gpt4"])  # untrained: one id a byte
    result, pieces = run(tok, "né ok", max_new_tokens=6)  # é is two bytes, two tokens
    assert result.text == "né ok"
    assert "".join(pieces) == "né ok" and not any("\ufffd" in p for p in pieces)
    assert pieces[1:3] == ["", "é"]  # nothing released until the character is whole


def test_no_new_tokens_is_an_empty_completion():
    result, pieces = run(CharTokenizer("ab"), "ab", max_new_tokens=0)
    assert (result.text, result.finish) == ("", "length")


def test_no_prompt_starts_after_end_of_text_or_a_newline():
    assert start_ids(CharTokenizer("ab\n", special_tokens=[ENDOFTEXT]), None) == ([3], "")
    assert start_ids(CharTokenizer("ab\n"), None) == ([2], "\n")
    with pytest.raises(ValueError, match="the prompt is empty"):
        start_ids(CharTokenizer("ab"), "")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.5), "temperature must be >= 0 (0 means greedy), got -0.5"),
        (dict(top_k=0), "top_k must be >= 1 (or None for no limit), got 0"),
        (dict(top_p=1.5), "top_p must be in (0, 1] (or None for no limit), got 1.5"),
        (dict(max_new_tokens=-3), "max_new_tokens must be >= 0, got -3"),
        (dict(stop=("",)), "a stop string is empty"),
    ],
)
def test_bad_settings_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SamplingSettings(**kwargs)
    if "stop" not in kwargs:  # the sampling loop refuses them too, before any work
        args = dict(max_new_tokens=3, temperature=1.0) | kwargs
        with pytest.raises(ValueError, match=re.escape(message)):
            next(generate_tokens(tiny(), torch.zeros(1, 1, dtype=torch.long), **args))


def test_cache_under_bf16_autocast():
    """Under autocast (bf16-mixed predict) keys come in bf16; the cache keeps them so, and
    greedy decoding matches recomputing under the same autocast (here; bf16 rounding could
    flip a near tie in general)."""
    model = tiny()
    prompt = torch.randint(0, 50, (2, 4), generator=torch.Generator().manual_seed(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached = generate(model, prompt, 10, temperature=0)
        recomputed = generate(model, prompt, 10, temperature=0, use_cache=False)
    assert cached.shape == (2, 14)
    assert torch.equal(cached, recomputed)


# ---- many prompts: batches by length, streaming, order


def test_complete_batches_by_length_and_keeps_the_order():
    torch.manual_seed(0)
    model = GPT(smallest_config(vocab_size=5)).eval()
    tokenizer = CharTokenizer("abcde")
    prompts = ["ab", "c", "ab", None, "ab"]
    settings = SamplingSettings(max_new_tokens=20, temperature=1.0, stream=False)
    results = complete(model, tokenizer, prompts, settings, torch.Generator().manual_seed(1))
    assert [r.prompt for r in results] == prompts
    assert all(len(r.text) == 20 and r.finish == "length" for r in results)
    assert len({r.text for r in results}) > 1  # one batch, different samples
    with pytest.raises(ValueError, match="character 'z' at position 1"):
        complete(model, tokenizer, ["ab", "az"], settings)  # refused before any sampling


def test_streamed_and_batched_greedy_write_the_same_text():
    model, tokenizer = tiny(), CharTokenizer(FIFTY_CHARS)
    prompts = ["AB", "C", "ABC", "XY"]
    written = {}
    for stream in (True, False):
        out = io.StringIO()
        settings = SamplingSettings(max_new_tokens=12, temperature=0, stream=stream)
        results = complete(model, tokenizer, prompts, settings, out=out)
        written[stream] = out.getvalue()
        assert written[stream] == "".join(f"{p}{r.text}\n{SEPARATOR}\n" for p, r in zip(prompts, results))
    assert written[True] == written[False]


def test_streaming_writes_each_piece_as_it_is_sampled():
    model, tokenizer = tiny(), CharTokenizer(FIFTY_CHARS)

    class Recorder(io.StringIO):
        writes: list[str] = []

        def write(self, text):
            self.writes.append(text)
            return super().write(text)

    out = Recorder()
    complete(model, tokenizer, ["AB"], SamplingSettings(max_new_tokens=10, temperature=0), out=out)
    assert out.writes[0] == "AB" and len([w for w in out.writes if len(w) == 1]) == 10  # the prompt, then one a token


@pytest.mark.parametrize(
    "prompt, printed",
    [
        (None, "ab"),  # no prompt: the text ends at the end of turn, which is not printed
        ([{"role": "user", "content": "a"}], "user: a\nassistant: ab"),  # a chat: its messages and the reply
    ],
)
def test_predict_from_a_chat_model_stops_at_its_end_of_turn(prompt, printed, capsys):
    """As the chat and the server do; a chat is shown without the template's tokens."""
    from types import SimpleNamespace

    from gpt.data.templates import Message, template
    from gpt.tokenizers import CHAT_TOKENS
    from gpt.train.predicting import predict_items

    chat = template("chat")
    tok = CharTokenizer("ab\n", special_tokens=[ENDOFTEXT, *CHAT_TOKENS])
    text = chat.prompt([Message(**m) for m in prompt]) if prompt else None
    prompt_len = len(tok.encode(text, allowed_special="all")) if text else 1  # no prompt: <|endoftext|>
    script = tok.encode("ab<|end|>\n<|user|>\nb", allowed_special="all") + [0] * 20
    sampling = SamplingSettings(temperature=0, max_new_tokens=10)
    module = SimpleNamespace(
        masked=False,
        sampling=sampling,
        template=chat,
        tokenizer=tok,
        model=Scripted(script, prompt_len, tok.vocab_size),
    )
    (record,) = predict_items(module, [{"index": 0, "sample": 0, "prompt": prompt}], torch.Generator())
    assert (record["completion"], record["finish"]) == ("ab", "eot")
    assert capsys.readouterr().out == printed + "\n" + "-" * 40 + "\n"
