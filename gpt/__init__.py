"""GPT-style language models from scratch, trained with PyTorch Lightning."""

from gpt.config import PRESETS, GPTConfig, preset
from gpt.hf import from_hf, load_hf, save_hf
from gpt.model import GPT, build_model
from gpt.tokenizers import BPETokenizer, CharTokenizer, TiktokenTokenizer, Tokenizer, TokenizerConfig

__all__ = [
    "GPT", "GPTConfig", "PRESETS", "preset", "build_model", "from_hf", "load_hf", "save_hf",
    "Tokenizer", "TokenizerConfig", "CharTokenizer", "TiktokenTokenizer", "BPETokenizer",
]  # fmt: skip
