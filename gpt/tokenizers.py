"""Tokenizers: text <-> integer ids.

Every tokenizer offers the same small interface (`encode`, `decode`, `vocab_size`) and
can be turned into a plain dict (`state_dict`) and back (`tokenizer_from_state`). The
dict holds only strings and numbers, so it travels inside a checkpoint and loads with
`torch.load(..., weights_only=True)`: predicting never needs the training corpus.

No Lightning here.
"""

from __future__ import annotations

from typing import Any


class Tokenizer:
    """The interface every tokenizer implements."""

    kind: str = ""

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer, as plain Python values."""
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """One id per character: the vocabulary is the sorted distinct characters of a corpus.

    Tiny Shakespeare has 65 of them. This is the tokenizer of Karpathy's char-rnn and of
    nanoGPT's `shakespeare_char`.
    """

    kind = "char"

    def __init__(self, chars: str):
        if not chars:
            raise ValueError("CharTokenizer needs at least one character in its vocabulary")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer vocabulary has repeated characters")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[ch] for ch in text]
        except KeyError:
            pass
        # Slow path, only to build a helpful message.
        for pos, ch in enumerate(text):
            if ch not in stoi:
                raise ValueError(
                    f"character {ch!r} at position {pos} is not in the tokenizer's vocabulary of "
                    f"{self.vocab_size} characters; use only characters that occur in the training corpus"
                ) from None
        raise AssertionError("unreachable")

    def decode(self, ids: list[int]) -> str:
        chars = self.chars
        return "".join(chars[i] for i in ids)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `Tokenizer.state_dict()`."""
    kind = state.get("kind")
    if kind == "char":
        return CharTokenizer(state["chars"])
    raise ValueError(f"unknown tokenizer kind {kind!r} in saved state; known kinds: 'char'")
