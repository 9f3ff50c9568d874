"""gpt/model/batching.py: decode() writes, many requests at a time, what each writes alone, and
n samples of one prompt share its prefill without changing what they write."""

import pytest
import torch

from gpt.model import batching
from gpt.model.batching import Request, decode, draw, forward_rows
from gpt.model.generation import SamplingSettings, complete
from gpt.model.models import build_model
from gpt.tokenizers import ENDOFTEXT, CharTokenizer
from helpers import noisy_gpt, tiny_config

CHARS = "".join(chr(65 + i) for i in range(49))  # 49 characters and <|endoftext|>: TINY's 50 ids
TOKENIZER = CharTokenizer(CHARS, [ENDOFTEXT])
PROMPTS = ["ABC", "HELLO", "Q", "ZYXWVUTSRQ", "MNOP"]


@pytest.fixture(scope="module", params=["learned", "rope"])
def model(request):
    return noisy_gpt(block_size=32, pos=request.param)


def alone(model, prompt: str, settings: SamplingSettings, seed: int = 1337) -> str:
    """What predict writes for one prompt with these settings and seed."""
    (result,) = complete(model, TOKENIZER, [prompt], settings, torch.Generator().manual_seed(seed))
    return result.text


def test_greedy_requests_in_a_batch_write_what_each_writes_alone(model):
    settings = SamplingSettings(max_new_tokens=12, temperature=0, stream=False, stop_at_eot=False)
    expected = [alone(model, p, settings) for p in PROMPTS]
    requests = [Request(TOKENIZER.encode(p), max_tokens=12, temperature=0) for p in PROMPTS]
    results = decode(model, TOKENIZER, requests, slots=2)  # five requests, two rows: continuous batching
    assert [r.text for r in results] == expected
    assert len({r.text for r in results}) == len(PROMPTS)  # the prompts lead somewhere different
    assert all(r.finish == "length" and len(r.ids) == 12 for r in results)
    assert [TOKENIZER.decode(r.ids) for r in results] == expected


def test_seeded_samples_write_what_predict_writes_with_that_seed(model):
    settings = SamplingSettings(max_new_tokens=10, temperature=0.9, top_k=20, stream=False, stop_at_eot=False)
    expected = [alone(model, p, settings, seed=i) for i, p in enumerate(PROMPTS)]
    requests = [
        Request(TOKENIZER.encode(p), max_tokens=10, temperature=0.9, top_k=20, seed=i) for i, p in enumerate(PROMPTS)
    ]
    greedy = Request(TOKENIZER.encode("ABC"), max_tokens=10, temperature=0)  # other settings in the same batch
    results = decode(model, TOKENIZER, [*requests, greedy], slots=4)
    assert [r.text for r in results[:-1]] == expected
    again = decode(model, TOKENIZER, requests[::-1], slots=3)  # reproducible, in any order and batch size
    assert [r.text for r in again[::-1]] == expected


def test_n_samples_of_one_prompt_share_one_prefill_and_write_what_each_writes_alone(model, monkeypatch):
    prompt = TOKENIZER.encode("SHARED")
    samples = [Request(prompt, max_tokens=8, temperature=1.0, seed=s) for s in range(6)]
    one_by_one = [decode(model, TOKENIZER, [r], slots=1)[0].text for r in samples]
    prefills = []  # the rows of each prefill's forward

    def counting(model, idx, cache, rows, ends=None):
        if ends is not None:
            prefills.append(idx.size(0))
        return forward_rows(model, idx, cache, rows, ends)

    monkeypatch.setattr(batching, "forward_rows", counting)
    other = Request(TOKENIZER.encode("OTHER"), max_tokens=8, temperature=0)
    results = decode(model, TOKENIZER, [*samples, other], slots=7)
    assert prefills == [2]  # six samples of one prompt and another prompt: two rows prefilled
    assert [r.text for r in results[:-1]] == one_by_one
    assert len(set(one_by_one)) > 3  # the seeds differ, so do the samples
    # The same Request object given n times is n samples, not one sequence written n times over.
    (twice_a, twice_b) = decode(model, TOKENIZER, [samples[0], samples[0]], slots=2)
    assert twice_a == twice_b and twice_a.text == one_by_one[0]


def test_stop_strings_end_ids_and_a_full_row(model):
    greedy = dict(max_tokens=20, temperature=0)
    (full,) = decode(model, TOKENIZER, [Request(TOKENIZER.encode("ABC"), **greedy)])
    stop = full.text[5:7]
    (cut,) = decode(model, TOKENIZER, [Request(TOKENIZER.encode("ABC"), stop=(stop,), **greedy)])
    assert cut.text == full.text[: full.text.index(stop)] and cut.finish == "stop"
    end = full.ids[3]
    (ended,) = decode(model, TOKENIZER, [Request(TOKENIZER.encode("ABC"), end_ids=frozenset({end}), **greedy)])
    first = full.ids.index(end)
    assert ended.ids == full.ids[: first + 1] and ended.finish == "stop"  # the end id is kept in ids, not in text
    assert ended.text == TOKENIZER.decode(full.ids[:first])
    (long,) = decode(model, TOKENIZER, [Request(TOKENIZER.encode("A" * 30), max_tokens=50, temperature=0)])
    assert long.finish == "length" and len(long.ids) == 3  # the row holds 32 positions: 30 + 2 in, one more out


def test_requests_are_checked_before_any_is_decoded(model):
    with pytest.raises(ValueError, match="request 1 has a prompt of 32 tokens; it needs 1 to 31"):
        decode(model, TOKENIZER, [Request([1], 4), Request([1] * 32, 4)])
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        decode(model, TOKENIZER, [Request([1], 0)])
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        decode(model, TOKENIZER, [Request([1], 4, temperature=-1)])
    teaching = build_model(tiny_config(arch="blocks"))
    with pytest.raises(ValueError, match="batched decoding needs a causal GPT with a KV cache, and this is arch"):
        decode(teaching, TOKENIZER, [Request([1], 4)])
    assert decode(model, TOKENIZER, []) == []


def test_draw_picks_what_torch_multinomial_picks_with_each_rows_generator():
    probs = torch.softmax(3 * torch.randn(6, 5000, generator=torch.Generator().manual_seed(0)), dim=-1)
    for seed in range(20):
        expected = [
            int(torch.multinomial(p[None], 1, generator=torch.Generator().manual_seed(seed + i)))
            for i, p in enumerate(probs)
        ]
        drawn = draw(probs, [torch.Generator().manual_seed(seed + i) for i in range(6)])
        assert drawn == expected
