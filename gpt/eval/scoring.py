"""Log-likelihood of a continuation after a context, batched, as lm-evaluation-harness's `hf`
model computes it (lm_eval/models/huggingface.py, `_loglikelihood_tokens`).

    request = encode_pair(tokenizer, "Question: ...\\nAnswer:", " yes")
    (result,) = loglikelihoods(model, [request], batch_size=32)
    result.logprob, result.is_greedy, result.truncated

What is scored, token for token as lm-eval does:
- the context and continuation are encoded together and split after the context's tokens
  (a space that ends the context moves to the continuation first), so that a word keeps
  the token it has in running text;
- a request longer than the model's context keeps its end: the model reads the last
  block_size of the tokens before the continuation's last, and `truncated` says so (a
  continuation longer than the context itself, which lm-eval refuses, is scored on its last
  block_size tokens);
- logprob sums log p(token | everything before it) over the continuation's tokens, and
  is_greedy says whether each of them is the model's argmax there (LAMBADA's accuracy).

Sharing. A request's logits depend only on the tokens before each position (causal
attention), so a request whose input is a prefix of another's is read off that one's row:
the four one-token choices of an MMLU question share one forward pass of the question
(lm-eval's `logits_cache` trick does this for identical inputs), and so does every request
whose window is a prefix of another's. Rows are sorted longest first and right-padded into
batches; padding after the real tokens is never seen by them (causal attention), so no mask
is needed. Plain torch, no Lightning.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass

import torch

from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer


@dataclass(frozen=True)
class Request:
    """Score `continuation` after `context` (token ids; the continuation is not empty)."""

    context: list[int]
    continuation: list[int]


@dataclass(frozen=True)
class Loglikelihood:
    logprob: float  # sum of the continuation tokens' log-probabilities
    is_greedy: bool  # every continuation token is the model's most likely next token
    truncated: bool  # the model's context cut the start of the request


def encode_pair(
    tokenizer: Tokenizer, context: str, continuation: str, allowed_special: Set[str] = frozenset()
) -> Request:
    """lm-eval's `_encode_pair`: the context's trailing spaces go to the continuation, then the
    whole text is encoded and split after the context's tokens. An empty context is the
    end-of-text token, as lm-eval's prefix token."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        if tokenizer.eot_id is None:
            raise ValueError("an empty context needs an <|endoftext|> token to start from; this tokenizer has none")
        return Request([tokenizer.eot_id], tokenizer.encode(continuation, allowed_special))
    whole = tokenizer.encode(context + continuation, allowed_special)
    context_ids = tokenizer.encode(context, allowed_special)
    return Request(context_ids, whole[len(context_ids) :])


def window(request: Request, block_size: int) -> tuple[list[int], list[int], bool]:
    """What the model reads for a request: the last block_size + 1 tokens without the last
    one (it is only predicted); the continuation tokens predicted in it (all of them, unless
    the continuation alone is longer than the context: then its last block_size, where
    lm-eval refuses the request); and whether the start was cut."""
    if not request.continuation:
        raise ValueError("a continuation of 0 tokens cannot be scored: give at least one token")
    tokens = request.context + request.continuation
    return tokens[-(block_size + 1) : -1], request.continuation[-block_size:], len(tokens) > block_size + 1


def shared_rows(inputs: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """The rows to run (no input that is a prefix of another), and each input's row. In
    sorted order an input that is a prefix of any other is a prefix of the next one."""
    order = sorted(range(len(inputs)), key=lambda i: inputs[i])
    rows: list[list[int]] = []
    row_of = [0] * len(inputs)
    after = None  # the input that follows in sorted order
    for i in reversed(order):
        if after is not None and inputs[after][: len(inputs[i])] == inputs[i]:
            row_of[i] = row_of[after]
        else:
            row_of[i] = len(rows)
            rows.append(inputs[i])
        after = i
    return rows, row_of


def check_causal(model: LanguageModel) -> None:
    if not model.config.causal:
        raise ValueError(
            "scoring reads how likely a model finds the next tokens; this is a masked language model "
            "(attention both ways), which does not predict next tokens: evaluate a causal one"
        )


@torch.no_grad()
def loglikelihoods(
    model: LanguageModel,
    requests: list[Request],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    done: Callable[[list[int]], None] = lambda finished: None,
) -> list[Loglikelihood]:
    """Each request's Loglikelihood, batch_size rows a forward pass; `done` is told the
    indices of the requests each batch finished (for a progress bar)."""
    check_causal(model)
    windows = [window(r, model.config.block_size) for r in requests]
    rows, row_of = shared_rows([inp for inp, _, _ in windows])
    served: dict[int, list[int]] = {}  # row -> the requests it serves
    for i, row in enumerate(row_of):
        served.setdefault(row, []).append(i)
    results: list[Loglikelihood | None] = [None] * len(requests)
    was_training = model.training
    model.eval()  # no dropout while scoring
    try:
        longest_first = sorted(range(len(rows)), key=lambda r: -len(rows[r]))
        for start in range(0, len(rows), batch_size):
            batch = longest_first[start : start + batch_size]
            finished, b_idx, positions, targets = [], [], [], []
            for b, r in enumerate(batch):
                for i in served[r]:
                    # The continuation is predicted at the last positions of its window.
                    inp, scored, _ = windows[i]
                    finished.append(i)
                    b_idx += [b] * len(scored)
                    positions += range(len(inp) - len(scored), len(inp))
                    targets += scored
            logprobs, hits = score_positions(model, [rows[r] for r in batch], b_idx, positions, targets, device)
            sizes = [len(windows[i][1]) for i in finished]
            for i, scores, hit in zip(finished, logprobs.split(sizes), hits.split(sizes)):
                results[i] = Loglikelihood(float(scores.sum()), bool(hit.all()), windows[i][2])
            done(finished)
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def score_positions(
    model: LanguageModel,
    rows: list[list[int]],
    b_idx: list[int],
    positions: list[int],
    targets: list[int],
    device: str | torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of right-padded rows; at each (row, position) the log-probability of
    its target and whether the target is the argmax there (on the CPU, one value each)."""
    x = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, row in enumerate(rows):
        x[i, : len(row)] = torch.tensor(row)
    b_idx_t, positions_t = torch.tensor(b_idx, device=device), torch.tensor(positions, device=device)
    with head_only_at(model, b_idx_t, positions_t) as selected:
        logits = model(x.to(device))
    if not selected:
        logits = logits[b_idx_t, positions_t]
    logits = logits.float()  # (N, vocab): the positions scored only
    targets_t = torch.tensor(targets, device=logits.device)
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, targets_t[:, None]).squeeze(1)
    return logprobs.cpu(), (logits.argmax(dim=-1) == targets_t).cpu()


@contextlib.contextmanager
def head_only_at(model: LanguageModel, b_idx: torch.Tensor, positions: torch.Tensor) -> Iterator[bool]:
    """Run the model's LM head on the scored positions only, as nanoGPT's generate runs it on
    the last one: the (B, T, vocab) logits of every position, most of a small model's work and
    memory (50,257 floats a token), are never made. A hook on `lm_head` picks the positions
    from its input; it yields False for a model without one (the bigram table), whose
    logits are then indexed."""
    head = getattr(model, "lm_head", None)
    if not isinstance(head, torch.nn.Module):
        yield False
        return
    handle = head.register_forward_pre_hook(lambda module, args: (args[0][b_idx, positions], *args[1:]))
    try:
        yield True
    finally:
        handle.remove()


def item_progress(item_of: list[int], report: Callable[[int], None]) -> Callable[[list[int]], None]:
    """A `done` for loglikelihoods that reports items, each finished once all its requests are
    (item_of[i]: the item of request i)."""
    left = Counter(item_of)

    def done(finished: list[int]) -> None:
        items = 0
        for i in finished:
            left[item_of[i]] -= 1
            items += left[item_of[i]] == 0
        if items:
            report(items)

    return done
