"""Byte-pair encoding, learned from a corpus: the algorithm of GPT-2's tokenizer, written
to be read.

`train_bpe` learns the merges; `bpe_encode_reference` applies them the straightforward
way (slow, a reference for tests and benchmarks). `gpt.tokenizers.BPETokenizer` wraps the
learned merges in a tiktoken encoder, which gives the same ids at tiktoken's speed.

Plain Python, no Lightning.
"""

from __future__ import annotations

import heapq
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable

import regex

# The pre-split patterns of GPT-2 and GPT-4 (tiktoken's r50k_base and cl100k_base). BPE
# merges happen only inside the pieces they cut, so a token never spans two words, a
# word and its punctuation, or letters and digits. GPT-4's also keeps numbers to at most
# three digits and ignores case in English contractions.
SPLIT_PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
}


def check_bpe_vocab_size(vocab_size: int, n_special: int) -> None:
    """Refuse a vocabulary too small for the 256 bytes and the special tokens."""
    smallest = 256 + n_special
    if vocab_size < smallest:
        raise ValueError(
            f"BPE vocab_size {vocab_size} is too small: it needs at least 256 byte tokens + {n_special} special "
            f"tokens = {smallest}, plus one per merge (try 512, 1024 or 4096)"
        )


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` with `new_id`, left to right."""
    out = []
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(texts: Iterable[str], num_merges: int, pattern: str) -> list[tuple[int, int]]:
    """Learn `num_merges` byte-pair merges from `texts`; merge i makes token 256 + i.

    1. Pre-split the text with `pattern` and count the distinct pieces: a word that occurs
       a thousand times is stored once, with weight 1000.
    2. Count adjacent pairs of ids over the distinct pieces, weighted by frequency, and
       remember which pieces hold each pair.
    3. Repeatedly merge the most frequent pair (ties: the smaller pair, so training is
       deterministic). Only the pieces that hold it change; their pair counts are
       updated in place rather than recounted over the whole corpus.

    A max-heap of (count, pair) finds the most frequent pair; entries whose count has
    changed since they were pushed are stale and skipped when popped.
    """
    split = regex.compile(pattern)
    piece_counts: Counter[str] = Counter()
    for text in texts:
        piece_counts.update(split.findall(text))
    words = [list(piece.encode("utf-8")) for piece in piece_counts]
    freqs = list(piece_counts.values())

    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (ids, f) in enumerate(zip(words, freqs)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += f
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    # Two merges that spell the same bytes ((a, bc) and (ab, c)) would make one token
    # twice; tiktoken keys tokens by their bytes, so the second is never learned.
    token_bytes = [bytes([i]) for i in range(256)]
    known = set(token_bytes)
    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # stale entry: this pair's count changed after it was pushed
        spelled = token_bytes[pair[0]] + token_bytes[pair[1]]
        if spelled in known:
            del pair_counts[pair]
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        token_bytes.append(spelled)
        known.add(spelled)

        changed = set()
        for w in where.pop(pair):
            ids, f = words[w], freqs[w]
            new_ids = merge(ids, pair, new_id)
            if len(new_ids) == len(ids):
                continue  # the pair left this piece in an earlier merge
            for p in zip(ids, ids[1:]):
                pair_counts[p] -= f
                changed.add(p)
            for p in zip(new_ids, new_ids[1:]):
                pair_counts[p] += f
                where[p].add(w)
                changed.add(p)
            words[w] = new_ids
        pair_counts.pop(pair, None)
        for p in changed:
            count = pair_counts.get(p, 0)
            if count > 0:
                heapq.heappush(heap, (-count, p))
            else:
                pair_counts.pop(p, None)
    if len(merges) < num_merges:
        warnings.warn(
            f"the training text has only {len(merges)} pairs left to merge, fewer than the {num_merges} asked "
            f"for: the BPE vocabulary is {256 + len(merges)} tokens plus specials"
        )
    return merges


def bpe_encode_reference(text: str, merges: list[tuple[int, int]], pattern: str) -> list[int]:
    """The straightforward BPE encoder: within each piece, apply the earliest-learned merge
    present until none applies. Slow; tests check tiktoken's encoder against it."""
    rank = {pair: 256 + i for i, pair in enumerate(merges)}
    out = []
    for piece in regex.findall(pattern, text):
        ids = list(piece.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                break
            ids = merge(ids, pair, rank[pair])
        out.extend(ids)
    return out
