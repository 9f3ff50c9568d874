"""Characters as tokens: the tokenizer of char-rnn and nanoGPT's shakespeare_char."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import regex

from gpt.tokenizers.base import AllowedSpecial, Tokenizer


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

    def _with_added(self, tokens: list[str]) -> CharTokenizer:
        return CharTokenizer(self.chars, [*self._special, *tokens])

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars, "special_tokens": list(self._special)}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
