"""Batched log-likelihood scoring (gpt/eval/scoring.py): the sums are the model's log-probabilities
token by token, a long request keeps its end and says it was cut, is_greedy is the argmax test,
requests that share a prefix share a row without changing a number, and the pair is encoded as
lm-evaluation-harness encodes it."""

import pytest
import torch

from gpt.eval.scoring import Request, encode_pair, item_progress, loglikelihoods, shared_rows, window
from gpt.model.models import GPT, LanguageModel, build_model
from gpt.tokenizers import TiktokenTokenizer
from helpers import tiny_config

BLOCK = 16


def random_gpt(**kwargs) -> LanguageModel:
    torch.manual_seed(0)
    model = build_model(tiny_config(block_size=BLOCK, **kwargs)).eval()
    with torch.no_grad():  # larger weights than GPT-2's init: log-probs far from uniform
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def ids(n: int, seed: int) -> list[int]:
    return torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def reference(model: LanguageModel, request: Request) -> tuple[float, bool]:
    """Each continuation token's log-probability from its own forward pass over the window
    before it, in float64, and whether every one is the argmax there."""
    tokens = (request.context + request.continuation)[-(BLOCK + 1) :]
    total, greedy = 0.0, True
    for p in range(max(len(tokens) - len(request.continuation), 1), len(tokens)):
        logits = model(torch.tensor([tokens[:p]]))[0, -1].double()
        total += torch.log_softmax(logits, dim=-1)[tokens[p]].item()
        greedy &= int(logits.argmax()) == tokens[p]
    return total, greedy


def greedy_continuation(model: GPT, context: list[int], n: int) -> list[int]:
    out = list(context)
    for _ in range(n):
        out.append(int(model(torch.tensor([out[-BLOCK:]]))[0, -1].argmax()))
    return out[len(context) :]


@pytest.mark.parametrize("arch", ["gpt", "blocks", "bigram"])  # the LM head run at the scored positions only, or not
@torch.no_grad()
def test_each_sum_is_the_models_log_probability_token_by_token_and_long_requests_keep_their_end(arch):
    model = random_gpt(arch=arch)
    requests = [
        Request(ids(5, 1), ids(3, 2)),
        Request(ids(10, 3), ids(7, 4)),  # 17 tokens: exactly block_size + 1, nothing cut
        Request(ids(11, 5), ids(7, 6)),  # 18: the first token is cut
        Request(ids(40, 7), ids(2, 8)),  # far longer than the context
        Request(ids(3, 9), ids(BLOCK, 10)),  # a continuation as long as the context
        Request(ids(3, 15), ids(BLOCK + 4, 16)),  # longer: its last BLOCK tokens are scored
    ]
    results = loglikelihoods(model, requests, batch_size=2)
    for request, result in zip(requests, results):
        total, greedy = reference(model, request)
        assert result.logprob == pytest.approx(total, abs=1e-4)
        assert result.is_greedy == greedy
    assert [r.truncated for r in results] == [False, False, True, True, True, True]
    assert len({round(r.logprob, 2) for r in results}) == 6  # distinct sums: the comparison has teeth
    assert all(len(h) == 0 for m in model.modules() for h in (m._forward_pre_hooks,))  # no hook left behind


@torch.no_grad()
def test_is_greedy_holds_only_when_every_continuation_token_is_the_argmax():
    model = random_gpt()
    context = ids(6, 11)
    greedy = greedy_continuation(model, context, 3)
    wrong = [*greedy[:2], (greedy[2] + 1) % 50]
    got = loglikelihoods(model, [Request(context, greedy), Request(context, wrong)])
    assert [r.is_greedy for r in got] == [True, False]
    assert got[0].logprob > got[1].logprob


@torch.no_grad()
def test_requests_that_share_a_prefix_share_a_row_and_score_as_alone():
    model = random_gpt()
    context = ids(8, 12)
    # Four one-token choices (MMLU's " A" .. " D"), a longer choice that extends the first, and another item.
    requests = [Request(context, [t]) for t in (3, 4, 5, 6)]
    requests += [Request(context, [3, 9, 9]), Request(ids(5, 13), [7])]
    rows, row_of = shared_rows([window(r, BLOCK)[0] for r in requests])
    assert len(rows) == 2  # context + [3, 9] serves the first five; the other item its own
    assert row_of[:5] == [row_of[0]] * 5 and row_of[5] != row_of[0]
    together = loglikelihoods(model, requests, batch_size=2)
    alone = [loglikelihoods(model, [r])[0] for r in requests]
    assert [r.logprob for r in together] == pytest.approx([r.logprob for r in alone], abs=1e-5)
    assert [r.is_greedy for r in together] == [r.is_greedy for r in alone]


def test_the_pair_is_encoded_whole_and_split_after_the_context():
    tokenizer = TiktokenTokenizer("gpt2")
    assert encode_pair(tokenizer, "Every effort moves", " you") == Request([6109, 3626, 6100], [345])
    # A space ending the context moves to the continuation, where GPT-2's BPE keeps it with its word.
    assert encode_pair(tokenizer, "Every effort moves ", "you") == Request([6109, 3626, 6100], [345])
    assert encode_pair(tokenizer, "", "Every") == Request([tokenizer.eot_id], [6109])  # lm-eval's prefix token


def test_what_cannot_be_scored_is_refused():
    model = random_gpt()
    with pytest.raises(ValueError, match="a continuation of 0 tokens"):
        loglikelihoods(model, [Request([1], [])])
    with pytest.raises(ValueError, match="this is a masked language model"):
        loglikelihoods(GPT(tiny_config(causal=False)), [Request([1], [2])])


def test_an_item_is_reported_once_all_its_requests_are_scored():
    reported = []
    done = item_progress([0, 0, 1, 1, 2], reported.append)
    done([0, 2])
    done([1])
    done([3, 4])
    assert reported == [1, 2]
