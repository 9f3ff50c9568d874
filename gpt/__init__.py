"""GPT-style language models from scratch, trained with PyTorch Lightning.

The model, tokenizers, corpora and checkpoints are plain torch and Python: use them
without Lightning, e.g.

    from gpt import GPT, GPTConfig, generate, load_model
    model, tokenizer = load_model("lightning_logs/shakespeare_char_cpu/version_0/checkpoints/last.ckpt")

Hugging Face GPT-2 in and out lives in gpt.interop.hf (`from gpt.interop.hf import from_hf, save_hf`);
it is not imported here, so that `python -m gpt.interop.hf` runs it as a fresh module.
"""

from gpt.interop.checkpoint import load_model
from gpt.model.config import PRESETS, GPTConfig
from gpt.model.generation import SamplingSettings, complete, generate
from gpt.model.models import GPT, build_model
from gpt.tokenizers import BPETokenizer, CharTokenizer, TiktokenTokenizer, Tokenizer
from gpt.tokenizers.settings import TokenizerConfig, tokenizer_config

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
