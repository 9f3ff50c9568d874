"""Benchmarks measured while training, as Lightning callbacks.

    trainer:
      callbacks:
        - class_path: gpt.train.eval_callbacks.HellaSwagEval
          init_args: {path: val, limit: 1000}     # val: downloaded once into data/hellaswag
        - class_path: gpt.train.eval_callbacks.BenchmarkEval
          init_args: {tasks: "piqa,lambada", limit: 200}   # python -m gpt.eval's tasks

The scoring itself is plain torch (`gpt/eval/`); this file only decides when it runs and
where its numbers go.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from gpt.eval.hellaswag import HELLASWAG_URLS, correct_counts, download, encode_item, read_items
from gpt.eval.run import data_dirs, find_data
from gpt.eval.task import EvalSettings, Task
from gpt.eval.tasks import task_named
from gpt.eval.tasks.choice import check_encodable

# The metrics logged: means over the items, which add up across processes (perplexity through
# its log). MMLU's per-subject and macro averages are left to python -m gpt.eval.
LOGGED = ("acc", "acc_norm", "perplexity")


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


class BenchmarkEval(Callback):
    """Benchmark scores after every validation, beside val/loss: a fixed subset of each task
    (its first `limit` items), scored as python -m gpt.eval scores them, logged as
    val/{task}_{metric} (val/piqa_acc, val/lambada_perplexity, ...) at the step it ran. A
    fine-tuned model is asked through its template, as the command asks it.

    Under DDP each process scores every world_size-th item and the means are combined."""

    def __init__(self, tasks: str = "piqa,lambada", limit: int | None = 200, data_dir: str | None = None):
        """
        Args:
            tasks: Comma-separated names of python -m gpt.eval's tasks (docs/evaluate.md).
            limit: Score the first `limit` items of each (of each subject, for mmlu); None: all.
            data_dir: Where the data is (default: data/eval, then ../shared/data/eval).
        """
        if limit is not None and limit < 1:
            raise ValueError(f"BenchmarkEval limit must be at least 1, got {limit}")
        self.names = [n.strip() for n in tasks.split(",") if n.strip()]
        self.tasks = [task_named(name) for name in self.names]  # an unknown name before the run starts
        self.limit, self.data_dir = limit, data_dir
        self.loaded: list[tuple[Task, list[dict[str, Any]]]] = []
        self._encodable = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dirs = data_dirs(self.data_dir)
        if trainer.is_global_zero:  # a task that downloads its data (HellaSwag) does it once
            for task in self.tasks:
                find_data(task, dirs)
        trainer.strategy.barrier("benchmarks")
        self.loaded = [(task, task.load(find_data(task, dirs), self.limit)) for task in self.tasks]
        for task, items in self.loaded:
            if len(items) < trainer.world_size:
                raise ValueError(
                    f"BenchmarkEval: {task.name} has {len(items)} items for {trainer.world_size} processes; "
                    "give a limit of at least one item a process"
                )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_encodable(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_encodable(pl_module)

    def check_encodable(self, pl_module: L.LightningModule) -> None:
        """A tokenizer that cannot encode a task's text stops the run before training, not at
        the first validation."""
        if self._encodable:
            return
        if pl_module.tokenizer is None:
            raise ValueError("BenchmarkEval needs the model's tokenizer: train with a data module or a checkpoint")
        for task, items in self.loaded:
            check_encodable(task.name, pl_module.tokenizer, items)
        self._encodable = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        settings = EvalSettings(device=str(pl_module.device), chat_template=pl_module.template)
        for task, items in self.loaded:
            mine = items[trainer.global_rank :: trainer.world_size]
            with trainer.precision_plugin.forward_context():
                result = task.evaluate(pl_module.model, pl_module.tokenizer, mine, settings)
            metrics = [m for m in LOGGED if m in result.metrics]
            # Sums over this process's items: a mean times n; perplexity as n x its log.
            sums = [len(mine) * as_mean(m, result.metrics[m].value) for m in metrics] + [len(mine)]
            sums = torch.tensor(sums, dtype=torch.float32, device=pl_module.device)
            totals = trainer.strategy.reduce(sums, reduce_op="sum").tolist()
            for metric, total in zip(metrics, totals):
                mean = total / totals[-1]
                pl_module.log(f"val/{task.name}_{metric}", math.exp(mean) if metric == "perplexity" else mean)


def as_mean(metric: str, value: float) -> float:
    """A metric as the mean over items it is: perplexity is exp(mean negative log-likelihood)."""
    return math.log(value) if metric == "perplexity" else value
