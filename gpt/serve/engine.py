"""Continuous batching: many requests decoded together, one forward a token for all of them.

The engine keeps `slots` sequences in one KV cache (SlotCache). A request waits in a bounded
queue until a slot is free; it is then prefilled alone (its prompt in one forward), and from
the next step on decodes with every other active request: one forward of batch B and length 1
a step, each row at its own position, attending to its own keys only. A request that ends
(its end-of-turn token, a stop string, max_tokens, or its client gone) frees its slot at once,
and a waiting one takes it at the next step. Each request samples with its own settings and
its own seeded generator, so a greedy one writes what it writes alone, and a seeded one what
`predict` writes with that seed.

Runs in a thread of its own: the web server's event loop only hands requests in and text out.
Plain torch, no Lightning.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gpt.model.generation import TextStream, next_token_probs
from gpt.model.layers import AttentionContext
from gpt.model.models import GPT
from gpt.tokenizers import Tokenizer


class QueueFull(Exception):
    """More requests are waiting than the server holds: the client should try again later."""


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


@dataclass
class Job:
    """One sequence to write (a request's choice): its prompt, settings and what to call with
    each piece of text, ("the text", None) as it comes and ("the last text", finish) at the end."""

    ids: list[int]
    max_tokens: int
    on_text: Callable[[str, str | None], None]
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    end_ids: frozenset[int] = frozenset()
    seed: int | None = None
    streaming: bool = True  # False: on_text once, with the whole text, at the end
    tokenizer: Tokenizer | None = None
    cancelled: bool = False  # set from another thread: the client left
    written: int = 0
    slot: int | None = None
    last: int = 0
    stream: TextStream | None = field(default=None, repr=False)
    generator: torch.Generator | None = field(default=None, repr=False)


class Engine:
    """Runs jobs in batches of up to `slots`, with up to `max_waiting` more waiting for a slot."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, slots: int = 16, max_waiting: int = 64):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.slots, self.max_waiting = slots, max_waiting
        self.cache = SlotCache(model, slots)
        self.waiting: collections.deque[Job] = collections.deque()
        self.active: dict[int, Job] = {}
        self.lock = threading.Condition()
        self.stopping = False
        self.steps = 0  # decode steps run (a batch of B rows is one step)
        self.thread = threading.Thread(target=self.run, name="engine", daemon=True)
        self.thread.start()

    @property
    def busy(self) -> int:
        return len(self.active) + len(self.waiting)

    def submit(self, jobs: list[Job]) -> None:
        """Queue a request's jobs together, or refuse them all when the queue is full."""
        with self.lock:
            if self.stopping:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) + len(jobs) > self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} requests are waiting for one of {self.slots} slots; try again")
            for job in jobs:  # every job made ready before any is queued: a request is queued whole or not at all
                job.tokenizer = job.tokenizer or self.tokenizer
                job.stream = TextStream(job.tokenizer, job.stop)
                device = self.cache.lengths.device
                seed = job.seed if job.seed is not None else random.randrange(2**62)  # unseeded: a fresh draw
                job.generator = torch.Generator(device=device).manual_seed(seed)
            self.waiting.extend(jobs)
            self.lock.notify()

    def stop(self, timeout: float = 60.0) -> None:
        """Take no more jobs, finish those in flight, then end the thread."""
        with self.lock:
            self.stopping = True
            self.lock.notify()
        self.thread.join(timeout)

    def run(self) -> None:
        while True:
            with self.lock:
                while not self.waiting and not self.active and not self.stopping:
                    self.lock.wait()
                if self.stopping and not self.waiting and not self.active:
                    return
                admitted = []
                free = [s for s in range(self.slots) if s not in self.active]
                while free and self.waiting:
                    job = self.waiting.popleft()
                    if not job.cancelled:
                        job.slot = free.pop(0)
                        self.active[job.slot] = job
                        admitted.append(job)
            try:
                with torch.inference_mode():
                    if admitted:
                        self.prefill(admitted)
                    self.decode()
            except Exception as e:  # a bug must not hang its clients: end their requests with it
                for job in list(self.active.values()):
                    self.finish(job, f"error: {type(e).__name__}: {e}")

    def prefill(self, jobs: list[Job]) -> None:
        """The prompts of the jobs just admitted, in one forward (padded on the right)."""
        device = self.cache.lengths.device
        rows = torch.tensor([j.slot for j in jobs], device=device)
        ends = torch.tensor([len(j.ids) for j in jobs], device=device)
        idx = torch.zeros(len(jobs), int(ends.max()), dtype=torch.long, device=device)
        for i, job in enumerate(jobs):
            idx[i, : len(job.ids)] = torch.tensor(job.ids)
        self.cache.lengths[rows] = 0
        logits = forward_rows(self.model, idx, self.cache, rows, ends)
        self.take_all(jobs, logits)

    def decode(self) -> None:
        """One token for every active job: one forward over the rows 0..n-1 that hold them
        (slots are taken lowest first, so the range stays short; a free row in it computes a
        token nobody reads, cheaper than gathering the rows)."""
        jobs = [j for j in self.active.values() if not self.drop_if_cancelled(j)]
        if not jobs:
            return
        n = max(j.slot for j in jobs) + 1
        last = [0] * n
        for job in jobs:
            last[job.slot] = job.last
        free = [s for s in range(n) if s not in self.active]
        if free:
            self.cache.lengths[free] = 0  # a free row writes at its start: never past its end
        idx = torch.tensor(last, device=self.cache.lengths.device)[:, None]
        logits = forward_rows(self.model, idx, self.cache, slice(0, n))
        self.steps += 1
        self.take_all(jobs, logits[[j.slot for j in jobs]])

    def take_all(self, jobs: list[Job], logits: torch.Tensor) -> None:
        """Each job's next token, sampled with its own settings and generator: the rows that
        share settings get their distributions in one go, then each draws from its own."""
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((job.temperature, job.top_k, job.top_p), []).append(i)
        tokens = [0] * len(jobs)
        for (temperature, top_k, top_p), rows in groups.items():
            if temperature == 0:
                picked = logits[rows].argmax(dim=-1).tolist()
            else:
                probs = next_token_probs(logits[rows], temperature, top_k, top_p)
                picked = [int(torch.multinomial(p[None], 1, generator=jobs[r].generator)) for r, p in zip(rows, probs)]
            for r, token in zip(rows, picked):
                tokens[r] = token
        for job, token in zip(jobs, tokens):
            self.take(job, token)

    def take(self, job: Job, token: int) -> None:
        """Hand on a job's next token: its text, or its end."""
        if self.drop_if_cancelled(job):
            return
        job.last, job.written = token, job.written + 1
        if token in job.end_ids:
            return self.finish(job, "stop")
        job.stream.push(token)
        if job.stream.finish == "stop":  # a stop string
            return self.finish(job, "stop")
        full = len(job.ids) + job.written > self.cache.capacity  # its cache row: the prompt and all but the last token
        if job.written >= job.max_tokens or full:
            return self.finish(job, "length")
        if job.streaming and (text := job.stream.release()):
            job.on_text(text, None)

    def finish(self, job: Job, reason: str) -> None:
        job.stream.close(reason)
        job.on_text(job.stream.release(), reason)
        self.free(job)

    def drop_if_cancelled(self, job: Job) -> bool:
        if job.cancelled:
            self.free(job)
        return job.cancelled

    def free(self, job: Job) -> None:
        with self.lock:
            self.active.pop(job.slot, None)


def wait_idle(engine: Engine, timeout: float) -> bool:
    """Whether the engine ran out of work within timeout seconds (for tests and shutdown)."""
    end = time.monotonic() + timeout
    while engine.busy and time.monotonic() < end:
        time.sleep(0.01)
    return not engine.busy
