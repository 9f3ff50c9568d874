"""The interface every tokenizer implements, and the special tokens they share.

Special tokens follow tiktoken: text such as "<|endoftext|>" in the input is ordinary
text unless the caller lists it in `allowed_special` (or passes "all").

No Lightning here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Set
from typing import Any, Literal

ENDOFTEXT = "<|endoftext|>"
PAD = "<|pad|>"
MASK = "<|mask|>"
# Added after the learned merges of a trained BPE: <|pad|> and <|mask|> serve masked
# language modelling and variable-length batches.
SPECIAL_TOKENS = (ENDOFTEXT, PAD, MASK)
# The chat template's markers (gpt/data/templates.py): who speaks, and where a turn ends.
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)

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

    def token_bytes(self, token: int) -> bytes:
        """The UTF-8 bytes one id stands for (a piece of a character, for byte-level BPEs)."""
        return self.decode([token]).encode("utf-8")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer, as plain Python values."""
        raise NotImplementedError

    def with_special_tokens(self, tokens: Iterable[str]) -> Tokenizer:
        """This tokenizer with `tokens` as special tokens too, each missing one taking the next
        id after the vocabulary (a model's embedding grows by those rows); itself if none is missing."""
        missing = [t for t in dict.fromkeys(tokens) if t not in self.special_tokens]
        return self._with_added(missing) if missing else self

    def _with_added(self, tokens: list[str]) -> Tokenizer:
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
