"""Benchmarks measured while training, as Lightning callbacks.

    trainer:
      callbacks:
        - class_path: gpt.train.eval_callbacks.HellaSwagEval
          init_args: {path: val, limit: 1000}     # val: downloaded once into data/hellaswag

The scoring itself is plain torch (`gpt/eval/hellaswag.py`); this file only decides when it
runs and where its numbers go.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from gpt.eval.hellaswag import HELLASWAG_URLS, correct_counts, download, encode_item, read_items


class HellaSwagEval(Callback):
    """HellaSwag accuracy after every validation, logged as val/hellaswag_acc (summed
    log-probability) and val/hellaswag_acc_norm (mean per token) at the step it ran.

    Under DDP each process scores every world_size-th item and the counts are summed, so
    the whole set costs 1/world_size of the time on each."""

    def __init__(self, path: str = "val", limit: int | None = None, data_dir: str = "data"):
        """
        Args:
            path: A HellaSwag jsonl file, or the name of a split ("val", "train") to download
                once into data_dir/hellaswag (on the first process; the others wait).
            limit: Score the first `limit` items only (None: all; the val split has 10,042).
            data_dir: Where a split named by `path` is downloaded.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"HellaSwagEval limit must be at least 1, got {limit}")
        self.path, self.limit, self.data_dir = path, limit, data_dir
        self.items: list[dict[str, Any]] | None = None
        self._encodable = False  # every item encoded once with the model's tokenizer

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        path = self.path
        if path in HELLASWAG_URLS:  # a split: downloaded once, by the first process
            if trainer.is_global_zero:
                download(path, self.data_dir)
            trainer.strategy.barrier("hellaswag")
            path = download(path, self.data_dir)  # there now: only its path
        self.items = read_items(path, self.limit)  # a bad file stops the run before it starts

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
