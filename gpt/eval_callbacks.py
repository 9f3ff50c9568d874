"""Benchmarks measured while training, as Lightning callbacks.

    trainer:
      callbacks:
        - class_path: gpt.eval_callbacks.HellaSwagEval
          init_args: {path: data/hellaswag/hellaswag_val.jsonl, limit: 1000}

The scoring itself is plain torch (`gpt/hellaswag.py`); this file only decides when it
runs and where its numbers go.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from gpt.hellaswag import correct_counts, encode_item, read_items


class HellaSwagEval(Callback):
    """HellaSwag accuracy after every validation, logged as val/hellaswag_acc (summed
    log-probability) and val/hellaswag_acc_norm (mean per token) at the step it ran.

    Under DDP each process scores every world_size-th item and the counts are summed, so
    the whole set costs 1/world_size of the time on each."""

    def __init__(self, path: str, limit: int | None = None):
        """
        Args:
            path: A HellaSwag jsonl file (`python -m gpt.hellaswag --help` downloads one;
                data/hellaswag/hellaswag_val.jsonl after that).
            limit: Score the first `limit` items only (None: all; the val split has 10,042).
        """
        if limit is not None and limit < 1:
            raise ValueError(f"HellaSwagEval limit must be at least 1, got {limit}")
        self.path, self.limit = path, limit
        self.items: list[dict[str, Any]] | None = None
        self._encodable = False  # every item encoded once with the model's tokenizer

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.items = read_items(self.path, self.limit)  # a bad file stops the run before it starts

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_encodable(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_encodable(pl_module)  # `validate` has no fit to start

    def check_encodable(self, pl_module: L.LightningModule) -> None:
        """Encode every item once before training, so that a tokenizer that cannot (a char
        tokenizer meeting a character its corpus lacks) stops the run at once, not at the
        first validation N steps later."""
        if self._encodable or not self.items:
            return
        if pl_module.tokenizer is None:
            raise ValueError("HellaSwagEval needs the model's tokenizer: train with a data module or a checkpoint")
        for item in self.items:
            encode_item(pl_module.tokenizer, item)
        self._encodable = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.items:
            return  # the sanity check is there to catch crashes, not to measure
        mine = self.items[trainer.global_rank :: trainer.world_size]
        with trainer.precision_plugin.forward_context():  # the precision validation runs in
            counts = correct_counts(pl_module.model, pl_module.tokenizer, mine, pl_module.device)
        sums = torch.tensor([counts["acc"], counts["acc_norm"], counts["n"]], device=pl_module.device)
        acc, acc_norm, n = trainer.strategy.reduce(sums, reduce_op="sum").tolist()
        # Already summed over processes: each logs the same numbers, no sync needed.
        pl_module.log("val/hellaswag_acc", acc / n)
        pl_module.log("val/hellaswag_acc_norm", acc_norm / n)
