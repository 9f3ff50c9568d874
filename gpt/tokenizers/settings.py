"""Which tokenizer to build: the `data.tokenizer` section of a config, one settings class per
kind, so that a config (and --print_config) shows only the settings of the kind it chose:
`data.tokenizer: {kind: bpe, vocab_size: 512}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gpt.tokenizers.base import SPECIAL_TOKENS
from gpt.tokenizers.bpe import check_bpe_vocab_size
from gpt.tokenizers.byte_level import check_tiktoken_name


@dataclass(frozen=True)
class CharSettings:
    """The corpus's characters, one token each.

    Args:
        kind: "char".
    """

    kind: Literal["char"] = "char"


@dataclass(frozen=True)
class TiktokenSettings:
    """A published BPE, through tiktoken.

    Args:
        kind: "tiktoken".
        encoding: tiktoken's encoding name: gpt2, cl100k_base, o200k_base, ... (gpt2 is
            loaded from r50k_base: the same ids).
    """

    kind: Literal["tiktoken"] = "tiktoken"
    encoding: str = "gpt2"

    def __post_init__(self) -> None:
        check_tiktoken_name(self.encoding)


@dataclass(frozen=True)
class BPESettings:
    """A byte-level BPE trained on the training split (or read from a file).

    Args:
        kind: "bpe".
        vocab_size: Tokens of the trained BPE, including 256 bytes and 3 special tokens.
        pattern: Pre-split regex of the trained BPE: "gpt2" or "gpt4".
        path: A BPE file saved by BPETokenizer.save to use instead of training one.
    """

    kind: Literal["bpe"] = "bpe"
    vocab_size: int = 4096
    pattern: Literal["gpt2", "gpt4"] = "gpt4"
    path: str | None = None

    def __post_init__(self) -> None:
        if self.path is None:
            check_bpe_vocab_size(self.vocab_size, len(SPECIAL_TOKENS))


# Which tokenizer to use: the `data.tokenizer` section of a config.
TokenizerConfig = CharSettings | TiktokenSettings | BPESettings
SETTINGS = {"char": CharSettings, "tiktoken": TiktokenSettings, "bpe": BPESettings}


def tokenizer_config(kind: str = "char", **settings: Any) -> TokenizerConfig:
    """The settings of a tokenizer kind: tokenizer_config("bpe", vocab_size=512)."""
    if kind not in SETTINGS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known kinds: {', '.join(map(repr, SETTINGS))}")
    return SETTINGS[kind](**settings)
