"""The one place that opens a checkpoint written by `python main.py fit`.

    checkpoint = load_checkpoint("lightning_logs/.../last.ckpt")   # checked, weights_only
    config = model_config(checkpoint)          # the GPTConfig it was trained with
    tokenizer = checkpoint_tokenizer(checkpoint)
    model, tokenizer = load_model("lightning_logs/.../last.ckpt")  # a plain torch model, eval mode

A checkpoint is read with `torch.load(..., weights_only=True)`: tensors and plain Python
values only, so loading one never runs code from it. Plain torch, no Lightning.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from gpt.config import FIELDS, GPTConfig
from gpt.model import LanguageModel, build_model
from gpt.tokenizers import Tokenizer, tokenizer_from_state

MODEL_PREFIX = "model."  # the LightningModule keeps the model as self.model


def check_checkpoint(path: str | Path) -> None:
    """Refuse a path that is not a checkpoint before torch.load does, with a plain message.

    torch.save writes a zip archive; checking its directory reads no tensors.
    """
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; check --ckpt_path")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a PyTorch checkpoint (no zip archive in it: another kind of file, "
            "or a checkpoint cut short while copying); check --ckpt_path"
        )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, on the CPU, read without running code from the file."""
    check_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {str(path)!r} could not be read safely ({first_line})") from None


def hyperparameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise ValueError("the checkpoint has no hyperparameters; was it written by this project's `main.py fit`?")
    return hparams


def model_config(checkpoint: dict[str, Any]) -> GPTConfig:
    """The GPTConfig the checkpoint's model was built with: its preset and the fields given
    beside it, and attention both ways for a masked model."""
    hparams = hyperparameters(checkpoint)
    given = {k: hparams[k] for k in FIELDS if k in hparams and k != "causal"}
    return GPTConfig(**given, causal=hparams.get("objective", "causal") == "causal")


def checkpoint_tokenizer(checkpoint: dict[str, Any]) -> Tokenizer | None:
    """The tokenizer saved with the model (None in a checkpoint without one), checked
    against the model's vocabulary."""
    if "tokenizer" not in checkpoint:
        return None
    tokenizer = tokenizer_from_state(checkpoint["tokenizer"])
    check_tokenizer_fits(tokenizer, checkpoint.get("hyper_parameters", {}).get("vocab_size"))
    return tokenizer


def check_tokenizer_fits(tokenizer: Tokenizer, vocab_size: int | None) -> None:
    if vocab_size is not None and tokenizer.vocab_size != vocab_size:
        raise ValueError(
            f"the checkpoint's tokenizer has {tokenizer.vocab_size} tokens but its model has vocab_size "
            f"{vocab_size}; the checkpoint is inconsistent: use the tokenizer the model was trained with"
        )


def model_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's state_dict, as the plain torch model names its tensors."""
    state = checkpoint.get("state_dict", {})
    return {k.removeprefix(MODEL_PREFIX): v for k, v in state.items() if k.startswith(MODEL_PREFIX)}


def read_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer inside the checkpoint at path (predicting needs no corpus)."""
    tokenizer = checkpoint_tokenizer(load_checkpoint(path))
    if tokenizer is None:
        raise ValueError(f"checkpoint {str(path)!r} has no tokenizer; was it written by this project's `main.py fit`?")
    return tokenizer


def load_model(path: str | Path) -> tuple[LanguageModel, Tokenizer | None]:
    """The trained model of a checkpoint as a plain torch module in eval mode, and its tokenizer."""
    checkpoint = load_checkpoint(path)
    model = build_model(model_config(checkpoint))
    model.load_state_dict(model_weights(checkpoint))
    return model.eval(), checkpoint_tokenizer(checkpoint)
