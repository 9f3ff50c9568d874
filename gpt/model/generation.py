"""Sampling: extend a sequence one token at a time.

With a KV cache (models that support one: the GPT) the prompt is prefilled once and every
step feeds the model one new token; without, every step recomputes the whole context.

Past the context window. Without the cache the model sees exactly the last block_size
tokens at every step, so every step past the window costs a full block_size forward. With
the cache and RoPE, the cache rolls (layers.KVCache): each new token's keys replace the
oldest, and every token attends to the block_size latest at every layer, at the cost of one
token a step (sliding-window attention, as Mistral). Learned absolute positions cannot roll
(a token's keys were computed at its old position), so when the cache is full it is
re-prefilled with the last block_size // 2 tokens at positions 0, 1, ... and decoding
carries on; llama.cpp's "context shift" does the same. The model then sees between
block_size // 2 and block_size of the latest tokens, and pays one half-window prefill per
block_size // 2 new tokens. Within the window cached and uncached generation give the same
ids; past it each of the three sees its own context.

Plain torch, no Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TextIO

import torch
import torch.nn as nn

from gpt.model.layers import KVCache
from gpt.tokenizers import Tokenizer

SEPARATOR = "-" * 40  # printed after each sample


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None = None) -> None:
    """Refuse bad settings before any work is done."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (or None for no limit), got {top_p}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one id per row from logits (B, vocab_size) -> (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy
    return torch.multinomial(next_token_probs(logits, temperature, top_k, top_p), num_samples=1, generator=generator)


def next_token_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The distribution each row samples its next id from (B, vocab_size); temperature > 0."""
    logits = logits.float() / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None and top_k < logits.size(-1):
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        # Nucleus sampling (Holtzman et al., 2019): keep the most likely tokens until their
        # mass reaches top_p. A token stays if the mass before it is still below top_p, so
        # the most likely token always stays.
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return probs


def generate_tokens(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield max_new_tokens ids (B, 1), one step at a time, continuing idx (B, T).

    Stop iterating to stop early (a stop string, say). use_cache falls back to
    recomputing the context for models without a KV cache.
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p)
    block_size = model.config.block_size
    if idx.size(1) == 0:
        raise ValueError("generation needs at least one token to start from")
    cache = None
    if use_cache and getattr(model, "supports_kv_cache", False):
        cache = KVCache(model.config, idx.size(0))
    seq = idx
    pending = idx[:, -block_size:]  # what the model has not seen yet: the prompt, to prefill
    for _ in range(max_new_tokens):
        # inference_mode (no_grad without autograd's bookkeeping: about 6% faster a token
        # at batch 1) per step, not around the loop: a generator suspended inside a `with`
        # would leave gradients off in the caller's code between steps.
        with torch.inference_mode():
            if cache is None:
                logits = model(seq[:, -block_size:])[:, -1, :]
            else:
                if not cache.fits(pending.size(1)):  # full, and cannot roll: shift the context
                    cache.pos = 0
                    pending = seq[:, -(block_size // 2) :]
                logits = model(pending, cache=cache)[:, -1, :]
            next_id = sample_next(logits, temperature, top_k, top_p, generator)
        # Either path reads at most the last block_size tokens: keep no more than that.
        seq = torch.cat((seq[:, max(0, seq.size(1) - block_size + 1) :], next_id), dim=1)
        pending = next_id
        yield next_id


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Append max_new_tokens sampled ids to idx (B, T) and return (B, T + max_new_tokens)."""
    steps = generate_tokens(model, idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache)
    return torch.cat([idx, *steps], dim=1)


# ---- text in, text out: prompts, stop strings, the end-of-text token, streaming


@dataclass(frozen=True)
class SamplingSettings:
    """How predict samples, checked when made: a bad value fails before any work.

    Args:
        max_new_tokens: Tokens to write after the prompt (0 or more).
        temperature: 0 picks the most likely token; below 1 sharper, above 1 flatter.
        top_k: Sample among the k most likely tokens only (unset: all). A masked model shows
            this many candidates for each <|mask|> (unset: 5).
        top_p: Sample among the fewest most likely tokens whose probabilities add up to
            top_p (nucleus sampling; unset: all).
        stop: Strings that end a sample (it stops before them).
        stop_at_eot: End a sample at the tokenizer's <|endoftext|> token.
        seed: Seed of the sampler: the same seed and settings give the same text.
        kv_cache: Keep past keys and values instead of recomputing the context at every
            token (GPT only; the teaching models always recompute).
        stream: Print each sample as it is written, one at a time; off: prompts of one
            token length are drawn as one batch and each is printed when done.
        int8: Decode with int8 weights (on a CPU: fewer bytes read per token, so faster;
            gpt/model/quantize.py; benchmarks/int8_decode.py measures what it changes).
    """

    max_new_tokens: int = 500
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    stop_at_eot: bool = True
    seed: int = 1337
    kv_cache: bool = True
    stream: bool = True
    int8: bool = False

    def __post_init__(self) -> None:
        check_sampling_args(self.max_new_tokens, self.temperature, self.top_k, self.top_p)
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(s == "" for s in self.stop):
            raise ValueError("a stop string is empty; an empty string would stop every sample at once")


@dataclass
class Completion:
    prompt: str | None  # None: the sample started from <|endoftext|> or a newline
    text: str  # what the model wrote after the prompt
    finish: str  # "stop" (a stop string), "eot" (<|endoftext|>) or "length" (max_new_tokens)


def start_ids(
    tokenizer: Tokenizer, prompt: str | None, allowed_special: AbstractSet[str] = frozenset()
) -> tuple[list[int], str]:
    """The ids a prompt encodes to (special-token text as text, but for allowed_special: a
    template's markers), and the text shown for it. No prompt: start after <|endoftext|>
    (shown as nothing), or after a newline when the tokenizer has no such token (as nanoGPT's
    Shakespeare samples)."""
    if prompt is not None:
        if prompt == "":
            raise ValueError("the prompt is empty; give at least one character")
        return tokenizer.encode(prompt, allowed_special=allowed_special), prompt
    if tokenizer.eot_id is not None:
        return [tokenizer.eot_id], ""
    try:
        return tokenizer.encode("\n"), "\n"
    except ValueError:  # a vocabulary without a newline: start from its first token
        return [0], tokenizer.decode([0])


class TextStream:
    """One sample's text as its ids arrive: cut at the first stop string, and released
    only where nothing can change any more (not a stop string's possible beginning, nor
    the first bytes of a character that one more token completes).

    Each token is decoded once (with the few before it that end inside a character), and
    stop strings are looked for in the new text only: the work per token stays constant
    however long the sample grows."""

    MAX_PENDING = 4  # a UTF-8 character is at most 4 bytes, so at most 4 byte-level tokens

    def __init__(self, tokenizer: Tokenizer, stop: tuple[str, ...]):
        self.tokenizer, self.stop = tokenizer, stop
        self.pending: list[int] = []  # ids whose text ends inside a character, not decoded yet
        self.text, self.released = "", 0
        self.finish: str | None = None

    def push(self, token: int) -> None:
        self.pending.append(token)
        piece = self.tokenizer.decode(self.pending)
        if piece.endswith("\ufffd") and len(self.pending) < self.MAX_PENDING:
            return  # wait for the rest of the character
        self.pending = []
        self.add(piece)

    def add(self, piece: str) -> None:
        start = len(self.text)
        self.text += piece
        # A stop string not found before can only end in the new piece.
        found = [i for s in self.stop if (i := self.text.find(s, max(0, start - len(s) + 1))) >= 0]
        if found:
            self.text, self.finish = self.text[: min(found)], "stop"

    def close(self, finish: str) -> None:
        """The sample is over: decode what is left (an unfinished character shows as \ufffd)."""
        if self.pending and self.finish is None:
            self.add(self.tokenizer.decode(self.pending))
        self.pending = []
        self.finish = self.finish or finish

    def release(self) -> str:
        """Text not released before that is final now (all of it once the sample is done)."""
        end = len(self.text)
        if self.finish is None:
            held = max((n for s in self.stop for n in range(1, len(s)) if self.text.endswith(s[:n])), default=0)
            end -= held
        new, self.released = self.text[self.released : end], max(self.released, end)
        return new


def complete_batch(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: list[str | None],
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    on_text: Callable[[int, str], None] | None = None,
    allowed_special: AbstractSet[str] = frozenset(),
    end_token: str | None = None,
) -> list[Completion]:
    """Continue every prompt; all of them sample as one batch, so give prompts of one token
    length (or one prompt). on_text(row, text) is called with each piece of a sample's text
    as soon as it is final: stream it to a terminal. end_token (a chat template's end of turn)
    ends a sample as <|endoftext|> does."""
    encoded = [start_ids(tokenizer, p, allowed_special)[0] for p in prompts]
    if len({len(ids) for ids in encoded}) != 1:
        raise ValueError("complete_batch() samples one batch: give prompts of one token length (or use complete())")
    device = next(model.parameters()).device
    idx = torch.tensor(encoded, dtype=torch.long, device=device)
    streams = [TextStream(tokenizer, settings.stop) for _ in prompts]
    ends = {tokenizer.eot_id} if settings.stop_at_eot else set()
    if end_token is not None:
        ends.add(tokenizer.special_tokens[end_token])
    s = settings
    steps = generate_tokens(model, idx, s.max_new_tokens, s.temperature, s.top_k, s.top_p, generator, s.kv_cache)
    for next_ids in steps:
        for row, (stream, token) in enumerate(zip(streams, next_ids[:, 0].tolist())):
            if stream.finish is not None:
                continue  # this sample has ended; its row runs on with the batch, ignored
            if token in ends:
                stream.close("eot")
            else:
                stream.push(token)
            if on_text is not None:
                on_text(row, stream.release())
        if all(stream.finish is not None for stream in streams):
            break
    out = []
    for row, (prompt, stream) in enumerate(zip(prompts, streams)):
        stream.close("length")
        if on_text is not None:
            on_text(row, stream.release())
        out.append(Completion(prompt, stream.text, stream.finish))
    return out


def write_to(out: TextIO) -> Callable[[int, str], None]:
    """An on_text for complete_batch(): each piece of text to `out` at once."""

    def write(row: int, text: str) -> None:
        out.write(text)
        out.flush()

    return write


def complete(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: list[str | None],
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    out: TextIO | None = None,
    allowed_special: AbstractSet[str] = frozenset(),
    end_token: str | None = None,
    shown: list[str | None] | None = None,
) -> list[Completion]:
    """Continue each prompt (None: no prompt); results in input order, every prompt checked
    before any sampling. Without settings.stream, prompts of one token length sample as
    one batch and are written to `out` (if given) at the end; with it, one at a time, each
    written as it is produced. A sample is written as its prompt (or what `shown` gives in
    its place, where not None), its text and a line of dashes."""
    starts = [start_ids(tokenizer, p, allowed_special) for p in prompts]  # encodes, so checks, every prompt
    if shown is not None:  # a chat's prompt is the template's text; shown as its messages
        starts = [(ids, text if instead is None else instead) for (ids, text), instead in zip(starts, shown)]
    groups: dict[int, list[int]] = {}
    for i, (ids, _) in enumerate(starts):
        groups.setdefault(i if settings.stream else len(ids), []).append(i)
    stream_to = out if settings.stream else None
    results: list[Completion | None] = [None] * len(prompts)
    for rows in groups.values():
        if stream_to is not None:  # a group of one: its prompt, then its text piece by piece
            stream_to.write(starts[rows[0]][1])
        on_text = write_to(stream_to) if stream_to is not None else None
        group = [prompts[i] for i in rows]
        batch = complete_batch(model, tokenizer, group, settings, generator, on_text, allowed_special, end_token)
        for i, result in zip(rows, batch):
            results[i] = result
        if stream_to is not None:
            stream_to.write(f"\n{SEPARATOR}\n")
            stream_to.flush()
    if out is not None and stream_to is None:
        out.write("".join(f"{shown}{result.text}\n{SEPARATOR}\n" for (_, shown), result in zip(starts, results)))
        out.flush()
    return results
