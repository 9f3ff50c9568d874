"""Starting weights for a new run (model.init_from): a checkpoint of this project (a LoRA one
merged) or Hugging Face GPT-2 weights, loaded into a model that may read more tokens than they
know (special tokens added for fine-tuning: their rows start at the mean embedding).

Plain torch, no Lightning.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path

import torch

from gpt.model.config import FIELDS
from gpt.model.models import LanguageModel, grown_rows

VOCAB_ROWS = ("transformer.wte.weight", "lm_head.weight")
# What may differ between the starting weights and the model: its vocabulary (new tokens), its
# context (a shorter one keeps the first positions) and how it trains.
MAY_DIFFER = {"preset", "vocab_size", "block_size", "dropout", "padded_vocab_multiple", "causal"}


def is_checkpoint(path: str | Path) -> bool:
    """A checkpoint of this project (`python main.py fit` writes .ckpt files), not GPT-2's files."""
    return Path(path).suffix == ".ckpt"


def load_init(model: LanguageModel, path: str | Path, new_ids: AbstractSet[int] = frozenset()) -> int:
    """Load the weights at path into model; the number of token rows the model has beyond
    theirs, which must be new_ids (the special tokens a fine-tuning template added)."""
    if not is_checkpoint(path):
        from gpt.interop.hf import load_hf

        return load_hf(model, path, new_ids)
    from gpt.interop.checkpoint import load_model

    start, _ = load_model(path)
    return load_weights(model, start, str(path), new_ids)


def load_weights(model: LanguageModel, start: LanguageModel, where: str, new_ids: AbstractSet[int]) -> int:
    """start's weights into model, which must have its shape but for the vocabulary (larger
    by new_ids) and the context."""
    for field in FIELDS:
        if field not in MAY_DIFFER and getattr(model.config, field) != getattr(start.config, field):
            raise ValueError(
                f"model.init_from {where} has {field} {getattr(start.config, field)!r} but the model has "
                f"{getattr(model.config, field)!r}; leave --model.{field} out to take the checkpoint's"
            )
    known, vocab = start.config.vocab_size, model.config.vocab_size
    if known > vocab or not set(range(known, vocab)) <= set(new_ids):
        raise ValueError(
            f"model.init_from {where} knows {known} tokens but the tokenizer has {vocab}; start from the "
            "checkpoint's own tokenizer (it comes with a checkpoint of ours: leave data.tokenizer out)"
        )
    state, own = start.state_dict(), model.state_dict()
    for name in VOCAB_ROWS:
        if name in state:  # the new tokens, then the model's own padding rows (never scored)
            state[name] = torch.cat([grown_rows(state[name], known, vocab), own[name][vocab:]])
    if "transformer.wpe.weight" in state:
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: model.config.block_size]
        if state["transformer.wpe.weight"].size(0) < model.config.block_size:
            raise ValueError(
                f"model.init_from {where} has a context of {start.config.block_size}; "
                f"--model.block_size {model.config.block_size} is longer"
            )
    model.load_state_dict(state)
    return vocab - known
