"""GPT-style language models from scratch, trained with PyTorch Lightning.

The model, tokenizers, corpora and checkpoints are plain torch and Python: use them
without Lightning, e.g.

    from gpt import GPT, GPTConfig, generate, load_model
    model, tokenizer = load_model("lightning_logs/shakespeare_char_cpu/version_0/checkpoints/last.ckpt")

Hugging Face GPT-2 in and out lives in gpt.hf (`from gpt.hf import from_hf, save_hf`);
it is not imported here, so that `python -m gpt.hf` runs it as a fresh module.
"""

from gpt.checkpoint import load_model
from gpt.config import PRESETS, GPTConfig, TokenizerConfig, tokenizer_config
from gpt.generation import SamplingSettings, complete, generate
from gpt.model import GPT, build_model
from gpt.tokenizers import BPETokenizer, CharTokenizer, TiktokenTokenizer, Tokenizer

__all__ = [
    "GPT",
    "GPTConfig",
    "PRESETS",
    "build_model",
    "load_model",
    "generate",
    "complete",
    "SamplingSettings",
    "Tokenizer",
    "TokenizerConfig",
    "tokenizer_config",
    "CharTokenizer",
    "TiktokenTokenizer",
    "BPETokenizer",
]
