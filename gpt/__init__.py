"""GPT-style language models from scratch, trained with PyTorch Lightning."""

from gpt.config import PRESETS, GPTConfig, preset
from gpt.model import GPT
from gpt.tokenizers import CharTokenizer, Tokenizer

__all__ = ["GPT", "GPTConfig", "PRESETS", "preset", "Tokenizer", "CharTokenizer"]
