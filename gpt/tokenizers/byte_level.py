"""Byte-level BPE through tiktoken: the published encodings (GPT-2's, GPT-4's) and the BPE
trained here on your corpus (gpt/tokenizers/bpe.py), both encoding at tiktoken's speed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tiktoken

from gpt.files import write_text
from gpt.tokenizers.base import SPECIAL_TOKENS, AllowedSpecial, Tokenizer
from gpt.tokenizers.bpe import SPLIT_PATTERNS, check_bpe_vocab_size, train_bpe

# tiktoken's "gpt2" is built from two files (vocab.bpe, encoder.json); "r50k_base" holds
# the very same ranks, pattern and <|endoftext|> id in one file. We always load that one.
TIKTOKEN_ALIASES = {"gpt2": "r50k_base"}


def check_tiktoken_name(name: str) -> None:
    known = tiktoken.list_encoding_names()
    if name not in known:
        raise ValueError(f"unknown tiktoken encoding {name!r}; known encodings: {', '.join(known)}")


def load_tiktoken(name: str) -> tiktoken.Encoding:
    """A tiktoken encoding by name, with messages that say what to do when it fails."""
    check_tiktoken_name(name)
    try:
        return tiktoken.get_encoding(TIKTOKEN_ALIASES.get(name, name))
    except Exception as e:  # requests' ConnectionError, a hash mismatch, a bad cache file ...
        cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or "unset"
        raise ValueError(
            f"could not load tiktoken encoding {name!r} ({type(e).__name__}: {str(e)[:200]}). tiktoken downloads "
            f"each encoding once and keeps it in TIKTOKEN_CACHE_DIR (now: {cache}); without internet, point "
            "TIKTOKEN_CACHE_DIR at a folder that already holds it"
        ) from None


class TiktokenBacked(Tokenizer):
    """A tokenizer that encodes and decodes through a tiktoken.Encoding: what the published
    encodings and our trained BPE share."""

    def __init__(self, enc: tiktoken.Encoding):
        self.enc = enc
        specials = ((s, enc.encode_single_token(s)) for s in enc.special_tokens_set)
        self._special = dict(sorted(specials, key=lambda item: item[1]))  # in id order

    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    def encode(self, text: str, allowed_special: AllowedSpecial = frozenset()) -> list[int]:
        return self.enc.encode(text, allowed_special=self._allowed(allowed_special), disallowed_special=())

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)  # a cut-off UTF-8 sequence decodes to U+FFFD

    def token_bytes(self, token: int) -> bytes:
        return self.enc.decode_single_token_bytes(token)


class TiktokenTokenizer(TiktokenBacked):
    """A published byte-level BPE (GPT-2's, GPT-4's, ...) through tiktoken.

    `gpt2` is served by `r50k_base`: the same 50,257 ids from a single file.
    """

    kind = "tiktoken"

    def __init__(self, encoding: str = "gpt2", added_tokens: Iterable[str] = ()):
        self.encoding, self.added_tokens = encoding, tuple(added_tokens)
        enc = load_tiktoken(encoding)
        if self.added_tokens:  # tiktoken's way to extend an encoding: the same ranks, more specials
            added = {s: enc.n_vocab + i for i, s in enumerate(self.added_tokens)}
            enc = tiktoken.Encoding(
                name=f"{enc.name}+{len(added)}",
                pat_str=enc._pat_str,
                mergeable_ranks=enc._mergeable_ranks,
                special_tokens={**enc._special_tokens, **added},
            )
        super().__init__(enc)

    def _with_added(self, tokens: list[str]) -> TiktokenTokenizer:
        return TiktokenTokenizer(self.encoding, (*self.added_tokens, *tokens))

    def state_dict(self) -> dict[str, Any]:
        state = {"kind": self.kind, "encoding": self.encoding}
        return state | ({"added_tokens": list(self.added_tokens)} if self.added_tokens else {})

    def __repr__(self) -> str:
        return f"TiktokenTokenizer({self.encoding!r}, vocab_size={self.vocab_size})"


class BPETokenizer(TiktokenBacked):
    """A byte-level BPE learned by `gpt.tokenizers.bpe.train_bpe`, encoding through tiktoken.

    Ids 0-255 are the bytes (so any UTF-8 text round-trips), 256 + i is merge i, and the
    special tokens follow the merges.
    """

    kind = "bpe"

    def __init__(self, merges: list[tuple[int, int]], pattern: str, special_tokens: Iterable[str] = SPECIAL_TOKENS):
        self.merges = [tuple(m) for m in merges]
        self.pattern = pattern
        token_bytes = [bytes([i]) for i in range(256)]
        for i, (a, b) in enumerate(self.merges):
            if not (a < 256 + i and b < 256 + i):
                raise ValueError(f"BPE merge {i} ({a}, {b}) uses a token that does not exist yet")
            token_bytes.append(token_bytes[a] + token_bytes[b])
        n = len(token_bytes)
        special = {s: n + i for i, s in enumerate(special_tokens)}
        enc = tiktoken.Encoding(
            name=f"bpe-{n + len(special)}",
            pat_str=pattern,
            mergeable_ranks={t: i for i, t in enumerate(token_bytes)},
            special_tokens=special,
            explicit_n_vocab=n + len(special),
        )
        super().__init__(enc)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        pattern: str = SPLIT_PATTERNS["gpt4"],
        special_tokens: Iterable[str] = SPECIAL_TOKENS,
    ) -> BPETokenizer:
        special_tokens = tuple(special_tokens)
        check_bpe_vocab_size(vocab_size, len(special_tokens))
        merges = train_bpe(texts, vocab_size - 256 - len(special_tokens), pattern)
        return cls(merges, pattern, special_tokens)

    def _with_added(self, tokens: list[str]) -> BPETokenizer:
        return BPETokenizer(self.merges, self.pattern, [*self._special, *tokens])

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pattern": self.pattern,
            "merges": [list(m) for m in self.merges],
            "special_tokens": list(self._special),
        }

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (readable; rebuild it with `load`), atomically."""
        write_text(path, json.dumps(self.state_dict()))

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"BPE tokenizer file {str(path)!r} does not exist")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{str(path)!r} is not a BPE tokenizer file written by BPETokenizer.save ({e})") from None
        if not isinstance(state, dict) or state.get("kind") != cls.kind:
            raise ValueError(f"{str(path)!r} is not a BPE tokenizer file written by BPETokenizer.save")
        return cls([tuple(m) for m in state["merges"]], state["pattern"], state["special_tokens"])

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"
