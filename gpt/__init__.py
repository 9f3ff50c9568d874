"""GPT-style language models from scratch, trained with PyTorch Lightning."""

from gpt.config import PRESETS, GPTConfig, preset
from gpt.model import GPT
from gpt.tokenizers import BPETokenizer, CharTokenizer, TiktokenTokenizer, Tokenizer, TokenizerConfig

__all__ = [
    "GPT", "GPTConfig", "PRESETS", "preset",
    "Tokenizer", "TokenizerConfig", "CharTokenizer", "TiktokenTokenizer", "BPETokenizer",
]  # fmt: skip
