"""Tokenizers: text <-> integer ids.

Three kinds behind one interface (`encode`, `decode`, `vocab_size`, `special_tokens`):

- `CharTokenizer`: one id per character of the corpus (65 on Tiny Shakespeare).
- `TiktokenTokenizer`: a published BPE through tiktoken (`gpt2`, `cl100k_base`, ...).
- `BPETokenizer`: a byte-level BPE trained here, on your corpus (`gpt/bpe.py`); it
  encodes through tiktoken, so it runs at tiktoken's speed.

Every tokenizer turns into a plain dict (`state_dict`) and back (`tokenizer_from_state`).
The dict holds only strings, numbers and lists, so it travels inside a checkpoint and
loads with `torch.load(..., weights_only=True)`: predicting never needs the corpus.

Special tokens follow tiktoken: text such as "<|endoftext|>" in the input is ordinary
text unless the caller lists it in `allowed_special` (or passes "all").

No Lightning here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Set
from pathlib import Path
from typing import Any, Literal

import regex
import tiktoken

from gpt.bpe import SPLIT_PATTERNS, check_bpe_vocab_size, train_bpe
from gpt.files import write_text

ENDOFTEXT = "<|endoftext|>"
PAD = "<|pad|>"
MASK = "<|mask|>"
# Added after the learned merges of a trained BPE: <|pad|> and <|mask|> serve masked
# language modelling and variable-length batches.
SPECIAL_TOKENS = (ENDOFTEXT, PAD, MASK)

# tiktoken's "gpt2" is built from two files (vocab.bpe, encoder.json); "r50k_base" holds
# the very same ranks, pattern and <|endoftext|> id in one file. We always load that one.
TIKTOKEN_ALIASES = {"gpt2": "r50k_base"}

AllowedSpecial = Set[str] | Literal["all"]


class Tokenizer:
    """The interface every tokenizer implements."""

    kind: str = ""

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special-token text -> id."""
        return {}

    @property
    def eot_id(self) -> int | None:
        """The id of <|endoftext|>, which separates documents, or None."""
        return self.special_tokens.get(ENDOFTEXT)

    def encode(self, text: str, allowed_special: AllowedSpecial = frozenset()) -> list[int]:
        """Ids of `text`. Special-token text becomes a special id only if allowed."""
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of several texts, specials as ordinary text (tiktoken uses threads here)."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer, as plain Python values."""
        raise NotImplementedError

    def identity(self) -> str:
        """A short hash of the state: two tokenizers with one identity encode alike."""
        return hashlib.md5(json.dumps(self.state_dict(), sort_keys=True).encode()).hexdigest()[:10]

    def _allowed(self, allowed_special: AllowedSpecial) -> set[str]:
        if allowed_special == "all":
            return set(self.special_tokens)
        unknown = set(allowed_special) - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"allowed_special names {sorted(unknown)}, which this tokenizer does not have; "
                f"its special tokens: {sorted(self.special_tokens) or 'none'}"
            )
        return set(allowed_special)


# --------------------------------------------------------------------------- characters


class CharTokenizer(Tokenizer):
    """One id per character: the vocabulary is the sorted distinct characters of a corpus.

    Tiny Shakespeare has 65 of them: the tokenizer of Karpathy's char-rnn and of nanoGPT's
    `shakespeare_char`. Special tokens, if any, take the ids after the characters.
    """

    kind = "char"

    def __init__(self, chars: str, special_tokens: Iterable[str] = ()):
        if not chars:
            raise ValueError("CharTokenizer needs at least one character in its vocabulary")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer vocabulary has repeated characters")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self._special = {s: len(chars) + i for i, s in enumerate(special_tokens)}
        self._itos = list(chars) + list(self._special)

    @classmethod
    def from_text(cls, text: str, special_tokens: Iterable[str] = ()) -> CharTokenizer:
        return cls("".join(sorted(set(text))), special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    def encode(self, text: str, allowed_special: AllowedSpecial = frozenset()) -> list[int]:
        allowed = self._allowed(allowed_special)
        if not allowed:
            return self._encode_chars(text, 0)
        ids: list[int] = []
        pos = 0
        # Split around the allowed special strings; the pieces between are characters.
        for piece in regex.split("(" + "|".join(regex.escape(s) for s in allowed) + ")", text):
            if piece in allowed:
                ids.append(self._special[piece])
            else:
                ids.extend(self._encode_chars(piece, pos))
            pos += len(piece)
        return ids

    def _encode_chars(self, text: str, offset: int) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[ch] for ch in text]
        except KeyError:
            pass
        # Slow path, only to build a helpful message.
        for pos, ch in enumerate(text):
            if ch not in stoi:
                raise ValueError(
                    f"character {ch!r} at position {offset + pos} is not in the tokenizer's vocabulary of "
                    f"{len(self.chars)} characters; use only characters that occur in the training corpus"
                ) from None
        raise AssertionError("unreachable")

    def decode(self, ids: list[int]) -> str:
        itos = self._itos
        return "".join(itos[i] for i in ids)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars, "special_tokens": list(self._special)}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# --------------------------------------------------------------------------- tiktoken


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


class TiktokenTokenizer(TiktokenBacked):
    """A published byte-level BPE (GPT-2's, GPT-4's, ...) through tiktoken.

    `gpt2` is served by `r50k_base`: the same 50,257 ids from a single file.
    """

    kind = "tiktoken"

    def __init__(self, encoding: str = "gpt2"):
        self.encoding = encoding
        super().__init__(load_tiktoken(encoding))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "encoding": self.encoding}

    def __repr__(self) -> str:
        return f"TiktokenTokenizer({self.encoding!r}, vocab_size={self.vocab_size})"


# --------------------------------------------------------------------------- our BPE


class BPETokenizer(TiktokenBacked):
    """A byte-level BPE learned by `gpt.bpe.train_bpe`, encoding through tiktoken.

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
        return tokenizer_from_state(state)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"


# --------------------------------------------------------------------------- choice and state


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `Tokenizer.state_dict()`."""
    kind = state.get("kind")
    if kind == "char":
        return CharTokenizer(state["chars"], state.get("special_tokens", ()))
    if kind == "tiktoken":
        return TiktokenTokenizer(state["encoding"])
    if kind == "bpe":
        return BPETokenizer([tuple(m) for m in state["merges"]], state["pattern"], state["special_tokens"])
    raise ValueError(f"unknown tokenizer kind {kind!r} in saved state; known kinds: 'char', 'tiktoken', 'bpe'")
