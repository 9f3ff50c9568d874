"""Tokenizers: text <-> integer ids.

Three kinds behind one interface (`encode`, `decode`, `vocab_size`, `special_tokens`):

- `CharTokenizer`: one id per character of the corpus (65 on Tiny Shakespeare).
- `TiktokenTokenizer`: a published BPE through tiktoken (`gpt2`, `cl100k_base`, ...).
- `BPETokenizer`: a byte-level BPE trained here, on your corpus (`gpt/tokenizers/bpe.py`); it
  encodes through tiktoken, so it runs at tiktoken's speed.

Every tokenizer turns into a plain dict (`state_dict`) and back (`tokenizer_from_state`).
The dict holds only strings, numbers and lists, so it travels inside a checkpoint and
loads with `torch.load(..., weights_only=True)`: predicting never needs the corpus.

Special tokens follow tiktoken: text such as "<|endoftext|>" in the input is ordinary
text unless the caller lists it in `allowed_special` (or passes "all").

No Lightning here.
"""

from __future__ import annotations

from typing import Any

from gpt.tokenizers.base import (
    ASSISTANT,
    CHAT_TOKENS,
    END,
    ENDOFTEXT,
    MASK,
    PAD,
    SPECIAL_TOKENS,
    SYSTEM,
    USER,
    AllowedSpecial,
    Tokenizer,
)
from gpt.tokenizers.byte_level import BPETokenizer, TiktokenBacked, TiktokenTokenizer, check_tiktoken_name
from gpt.tokenizers.char import CharTokenizer

__all__ = [
    "ASSISTANT",
    "CHAT_TOKENS",
    "END",
    "SYSTEM",
    "USER",
    "ENDOFTEXT",
    "MASK",
    "PAD",
    "SPECIAL_TOKENS",
    "AllowedSpecial",
    "Tokenizer",
    "CharTokenizer",
    "TiktokenBacked",
    "TiktokenTokenizer",
    "BPETokenizer",
    "check_tiktoken_name",
    "tokenizer_from_state",
]


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `Tokenizer.state_dict()`."""
    kind = state.get("kind")
    if kind == "char":
        return CharTokenizer(state["chars"], state.get("special_tokens", ()))
    if kind == "tiktoken":
        return TiktokenTokenizer(state["encoding"], state.get("added_tokens", ()))
    if kind == "bpe":
        return BPETokenizer([tuple(m) for m in state["merges"]], state["pattern"], state["special_tokens"])
    raise ValueError(f"unknown tokenizer kind {kind!r} in saved state; known kinds: 'char', 'tiktoken', 'bpe'")
