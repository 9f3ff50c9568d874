"""The interface every tokenizer implements, and the special tokens they share.

Special tokens follow tiktoken: text such as "<|endoftext|>" in the input is ordinary
text unless the caller lists it in `allowed_special` (or passes "all").

No Lightning here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Set
from typing import Any, Literal

ENDOFTEXT = "<|endoftext|>"
PAD = "<|pad|>"
MASK = "<|mask|>"
# Added after the learned merges of a trained BPE: <|pad|> and <|mask|> serve masked
# language modelling and variable-length batches.
SPECIAL_TOKENS = (ENDOFTEXT, PAD, MASK)

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
