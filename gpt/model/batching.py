"""Continuous batching: many sequences decoded together, one forward a token for all of them.

    results = decode(model, tokenizer, [Request(ids, max_tokens=64, temperature=0.8, seed=i) for ...])
    results[0].text, results[0].ids, results[0].finish

A Batch keeps `slots` sequences in one KV cache (SlotCache), a row each. A request is admitted
to a free row; the requests admitted together are prefilled in one forward (padded on the
right), and requests with the same prompt share it: one of them is prefilled and its keys and
values are copied to the others' rows (n samples of one prompt cost one prefill). From the next
step on, every active request decodes together: one forward of batch B and length 1 a step,
each row at its own position, attending to its own keys only. A request that ends (an end id,
a stop string, max_tokens, or a full row) frees its row at once, and a waiting one takes it
at the next step. Each request samples with its own settings and its own seeded generator, so
a greedy one writes what it writes alone, and a seeded one what `predict` writes with that
seed, whatever else is in the batch.

decode() runs a list of requests to the end here and now (benchmarks, rollouts); the server's
Engine (gpt/serve/engine.py) runs a Batch in a thread and feeds it requests as they come.
Plain torch, no Lightning.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from gpt.model.generation import TextStream, check_sampling_args, next_token_probs
from gpt.model.layers import AttentionContext
from gpt.model.models import GPT, LanguageModel
from gpt.tokenizers import Tokenizer


class SlotCache:
    """Keys and values of `slots` sequences of different lengths, each in its own row of
    block_size positions; `lengths` counts each row's positions. A forward writes the rows
    it is given (`rows`), each at its own next position."""

    def __init__(self, model: GPT, slots: int):
        c = model.config
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        dtype = dtype if dtype.is_floating_point else torch.float32  # int8 weights: float activations
        shape = (slots, c.n_head, c.block_size, c.head_size)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(c.n_layer)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(c.n_layer)]
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)
        self.capacity = c.block_size
        self.rows = slice(0, slots)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, n_head, T, head_size) of self.rows at their next positions; those
        rows' keys and values (a view for a range of rows, a copy for a list of them)."""
        positions = self.lengths[self.rows, None] + torch.arange(k.size(2), device=k.device)  # (B, T)
        if isinstance(self.rows, slice):
            keys, values = self.keys[layer][self.rows], self.values[layer][self.rows]
            rows = torch.arange(keys.size(0), device=k.device)
        else:
            keys, values, rows = self.keys[layer], self.values[layer], self.rows
        rows = rows[:, None].expand_as(positions)
        keys[rows, :, positions] = k.transpose(1, 2)
        values[rows, :, positions] = v.transpose(1, 2)
        if isinstance(self.rows, slice):
            return keys, values
        return keys[self.rows], values[self.rows]

    def copy_rows(self, sources: torch.Tensor, targets: torch.Tensor) -> None:
        """Rows `targets` become copies of rows `sources`: a shared prompt prefilled once."""
        for keys, values in zip(self.keys, self.values):
            keys[targets] = keys[sources]
            values[targets] = values[sources]
        self.lengths[targets] = self.lengths[sources]


def forward_rows(
    model: GPT, idx: torch.Tensor, cache: SlotCache, rows: slice | torch.Tensor, ends: torch.Tensor | None = None
) -> torch.Tensor:
    """GPT.forward for some rows of a SlotCache: idx (B, T) continues each row's sequence at its
    own position; the logits at each row's last position, (B, vocab_size). ends (B,): the rows'
    real lengths in idx when they are padded on the right (prompts of several lengths at once)."""
    T = idx.size(1)
    positions = cache.lengths[rows, None] + torch.arange(T, device=idx.device)  # (B, T)
    x = model.transformer.wte(idx)
    rope = None
    if model.config.pos == "learned":
        x = x + model.transformer.wpe(positions)
    else:
        cos, sin = model.rope_for(0, cache.capacity)
        rope = (cos[positions][:, None], sin[positions][:, None])  # (B, 1, T, head_size/2 pairs)
    keys = torch.arange(cache.capacity, device=idx.device)
    mask = keys[None, None, None, :] <= positions[:, None, :, None]  # (B, 1, T, capacity): its own past
    cache.rows = rows
    ctx = AttentionContext(rope, mask, False, cache)
    for block in model.transformer.h:
        x = block(x, ctx)
    if ends is None:
        cache.lengths[rows] += T
        last = x[:, -1]
    else:  # the padding's keys, written past each row's end, are overwritten as it decodes
        cache.lengths[rows] += ends
        last = x[torch.arange(x.size(0)), ends - 1]
    logits = model.lm_head(model.transformer.ln_f(last))
    return logits[..., : model.config.vocab_size]


def draw(probs: torch.Tensor, generators: list[torch.Generator]) -> list[int]:
    """One id from each row of probs (B, vocab_size), row i with generators[i]: the id that
    torch.multinomial(probs[i:i+1], 1, generator=generators[i]) draws, by its own method (the
    argmax of p / q with q ~ Exp(1): the Gumbel-max trick), but one division and one argmax
    for all rows instead of a call, and the checks that wait for their results, a row."""
    q = torch.empty_like(probs)
    for row, generator in zip(q, generators):
        row.exponential_(generator=generator)
    return (probs / q).argmax(dim=-1).tolist()


@dataclass
class Request:
    """One sequence to write: its prompt's ids, how to sample, when to end. It ends at an id of
    end_ids, at a stop string (left out of the text), after max_tokens, or when its cache row
    is full. on_text, if given, is called with each piece of text as it becomes final,
    ("the text", None), and once at the end, ("the last text", finish); not streaming: once,
    at the end, with the whole text. seed None draws a fresh seed."""

    ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    end_ids: frozenset[int] = frozenset()
    seed: int | None = None
    on_text: Callable[[str, str | None], None] | None = None
    streaming: bool = True
    tokenizer: Tokenizer | None = None  # None: the batch's
    cancelled: bool = False  # set from another thread: nobody reads it any more (a client left)
    tokens: list[int] = field(default_factory=list)  # the ids written so far (an end id included)
    slot: int | None = None
    stream: TextStream | None = field(default=None, repr=False)
    generator: torch.Generator | None = field(default=None, repr=False)

    @property
    def written(self) -> int:
        return len(self.tokens)

    @property
    def finish(self) -> str | None:
        """None while it runs; "stop" (an end id or a stop string) or "length" once it ended."""
        return self.stream.finish if self.stream is not None else None


@dataclass(frozen=True)
class Decoded:
    text: str  # what the request wrote, cut before a stop string
    ids: list[int]  # every id it sampled, the end id included when it ended with one
    finish: str  # "stop" (an end id or a stop string) or "length" (max_tokens, or its row is full)


def check_request(request: Request, block_size: int, where: str = "a request") -> None:
    if not 0 < len(request.ids) < block_size:
        raise ValueError(
            f"{where} has a prompt of {len(request.ids)} tokens; it needs 1 to {block_size - 1} "
            f"(the model's context is {block_size}): shorten it"
        )
    if request.max_tokens < 1:
        raise ValueError(f"{where}: max_tokens must be >= 1, got {request.max_tokens}")
    check_sampling_args(request.max_tokens, request.temperature, request.top_k, request.top_p)


class Batch:
    """Up to `slots` requests decoding together, a row of one SlotCache each."""

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer, slots: int):
        if not model.supports_kv_cache or not model.config.causal:
            kind = "a masked language model" if model.supports_kv_cache else f"arch {model.config.arch!r}"
            raise ValueError(f"batched decoding needs a causal GPT with a KV cache, and this is {kind}")
        self.model, self.tokenizer, self.slots = model.eval(), tokenizer, slots
        self.cache = SlotCache(model, slots)
        self.active: dict[int, Request] = {}
        self.steps = 0  # decode steps run (a batch of B rows is one step)

    def free_slots(self) -> list[int]:
        return [s for s in range(self.slots) if s not in self.active]

    def admit(self, request: Request, slot: int) -> None:
        """Give a request a free row and its own stream and generator (no forward yet)."""
        request.tokenizer = request.tokenizer or self.tokenizer
        request.stream = TextStream(request.tokenizer, request.stop)
        seed = request.seed if request.seed is not None else random.randrange(2**62)  # unseeded: a fresh draw
        request.generator = torch.Generator(device=self.cache.lengths.device).manual_seed(seed)
        request.slot = slot
        self.active[slot] = request

    def prefill(self, requests: list[Request]) -> None:
        """The prompts of requests just admitted, in one forward (padded on the right); a prompt
        that several of them share is computed once and its row copied to the others."""
        device = self.cache.lengths.device
        leader: dict[tuple[int, ...], Request] = {}  # each distinct prompt -> the request prefilled for it
        for r in requests:
            leader.setdefault(tuple(r.ids), r)
        prompts = list(leader)
        rows = torch.tensor([leader[p].slot for p in prompts], device=device)
        ends = torch.tensor([len(p) for p in prompts], device=device)
        idx = torch.zeros(len(prompts), int(ends.max()), dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            idx[i, : len(p)] = torch.tensor(p)
        self.cache.lengths[rows] = 0
        logits = forward_rows(self.model, idx, self.cache, rows, ends)
        copies = [(leader[tuple(r.ids)].slot, r.slot) for r in requests if leader[tuple(r.ids)] is not r]
        if copies:
            sources, targets = zip(*copies)
            self.cache.copy_rows(torch.tensor(sources, device=device), torch.tensor(targets, device=device))
        place = {p: i for i, p in enumerate(prompts)}
        logits = logits[[place[tuple(r.ids)] for r in requests]]
        self.take_all(requests, logits)

    def step(self) -> None:
        """One token for every active request: one forward over the rows 0..n-1 that hold them
        (slots are taken lowest first, so the range stays short; a free row in it computes a
        token nobody reads, cheaper than gathering the rows)."""
        requests = [r for r in list(self.active.values()) if not self.drop_if_cancelled(r)]
        if not requests:
            return
        n = max(r.slot for r in requests) + 1
        last = [0] * n
        for r in requests:
            last[r.slot] = r.tokens[-1]
        free = [s for s in range(n) if s not in self.active]
        if free:
            self.cache.lengths[free] = 0  # a free row writes at its start: never past its end
        idx = torch.tensor(last, device=self.cache.lengths.device)[:, None]
        logits = forward_rows(self.model, idx, self.cache, slice(0, n))
        self.steps += 1
        self.take_all(requests, logits[[r.slot for r in requests]])

    def take_all(self, requests: list[Request], logits: torch.Tensor) -> None:
        """Each request's next token, sampled with its own settings and generator: the rows that
        share settings get their distributions in one go, then each draws from its own."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.temperature, r.top_k, r.top_p), []).append(i)
        tokens = [0] * len(requests)
        for (temperature, top_k, top_p), rows in groups.items():
            if temperature == 0:
                picked = logits[rows].argmax(dim=-1).tolist()
            else:
                probs = next_token_probs(logits[rows], temperature, top_k, top_p)
                picked = draw(probs, [requests[i].generator for i in rows])
            for i, token in zip(rows, picked):
                tokens[i] = token
        for r, token in zip(requests, tokens):
            self.take(r, token)

    def take(self, r: Request, token: int) -> None:
        """Hand on a request's next token: its text, or its end."""
        if self.drop_if_cancelled(r):
            return
        r.tokens.append(token)
        if token in r.end_ids:
            return self.finish(r, "stop")
        r.stream.push(token)
        if r.stream.finish == "stop":  # a stop string
            return self.finish(r, "stop")
        full = len(r.ids) + r.written > self.cache.capacity  # its row: the prompt and all but the last token
        if r.written >= r.max_tokens or full:
            return self.finish(r, "length")
        if r.on_text is not None and r.streaming and (text := r.stream.release()):
            r.on_text(text, None)

    def finish(self, r: Request, reason: str) -> None:
        r.stream.close(reason)
        if r.on_text is not None:
            r.on_text(r.stream.release(), reason)
        self.active.pop(r.slot, None)

    def drop_if_cancelled(self, r: Request) -> bool:
        if r.cancelled:
            self.active.pop(r.slot, None)
        return r.cancelled


def decode(
    model: LanguageModel,
    tokenizer: Tokenizer,
    requests: list[Request],
    slots: int = 16,
    on_finish: Callable[[int, Decoded], None] | None = None,
) -> list[Decoded]:
    """Write every request, `slots` at a time with continuous batching; results in input order.
    on_finish(i, result) is called as request i ends (for progress, or to start work on it).
    Requests with one prompt admitted together share its prefill: give a prompt's n samples
    next to each other. Every request is checked before any is decoded."""
    for i, r in enumerate(requests):
        check_request(r, model.config.block_size, f"request {i}")
    if not requests:
        return []
    # Copies, each with its own state: the same Request given n times is n samples.
    fresh = [replace(r, tokens=[], slot=None, stream=None, generator=None) for r in requests]
    batch = Batch(model, tokenizer, min(slots, len(fresh)))
    waiting = collections.deque(enumerate(fresh))
    results: list[Decoded | None] = [None] * len(fresh)
    running: dict[int, Request] = {}  # index -> request, from its admission to its end
    with torch.inference_mode():
        while waiting or batch.active:
            admitted = []
            for slot in batch.free_slots()[: len(waiting)]:
                i, r = waiting.popleft()
                batch.admit(r, slot)
                admitted.append(r)
                running[i] = r
            if admitted:
                batch.prefill(admitted)
            batch.step()
            for i, r in [(i, r) for i, r in running.items() if r.finish is not None]:
                results[i] = Decoded(r.stream.text, r.tokens, r.finish)
                del running[i]
                if on_finish is not None:
                    on_finish(i, results[i])
    return results
