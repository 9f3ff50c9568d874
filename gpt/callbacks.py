"""Lightning callbacks: tokens/s for token batches, a JSON-lines writer for predict, and a
dropout schedule."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch.nn as nn
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ThroughputMonitor

from gpt.files import atomic_write


def _sequences(batch: Any) -> int:
    return batch[0].size(0)


def _tokens(batch: Any) -> int:
    return batch[0].numel()


class TokenThroughputMonitor(ThroughputMonitor):
    """Lightning's ThroughputMonitor for (x, y) batches of token ids.

    Logs `train|val/{device/,}{batches,samples,items}_per_sec` where samples are
    sequences and items are tokens; on a GPU also `.../mfu` (LitGPT sets flops_per_batch).
    Predict batches are prompts, not tokens, so predict is not measured.
    """

    def __init__(self, window_size: int = 10, **kwargs: Any):
        # Rates are averaged over the last window_size batches (Lightning's default: 100).
        super().__init__(batch_size_fn=_sequences, length_fn=_tokens, window_size=window_size, **kwargs)

    def on_predict_start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
        pass


class JSONLinesWriter(BasePredictionWriter):
    """Save what predict writes, one JSON object a sample: index (of the prompt), sample,
    prompt (null: none), completion, finish ("stop", "eot" or "length") and settings.

        python main.py predict --ckpt_path ... --trainer.callbacks+=gpt.callbacks.JSONLinesWriter \\
            --trainer.callbacks.path samples.jsonl
    """

    def __init__(self, path: str = "predictions.jsonl"):
        super().__init__(write_interval="batch")
        self.path = Path(path)

    def _file(self, trainer: L.Trainer) -> Path:
        # One file a process under DDP, so that ranks never write into one another's lines.
        return self.path if trainer.world_size == 1 else self.path.with_suffix(f".rank{trainer.global_rank}.jsonl")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self._file(trainer)
        if path.is_dir():
            raise ValueError(
                f"the JSON-lines writer's path {str(path)!r} is a folder; give a file name, e.g. {path}/samples.jsonl"
            )
        # Written beside the target and renamed over it when predict ends: a run that fails
        # leaves the previous file as it was, and a reader never sees half a run.
        self._files = contextlib.ExitStack()
        self._out = self._files.enter_context(atomic_write(path, "w", encoding="utf-8"))

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        for record in prediction:
            self._out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._files.close()  # the finished file takes the target's name

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        files = getattr(self, "_files", None)
        if files is not None:
            files.__exit__(type(exception), exception, exception.__traceback__)  # the unfinished file is deleted


class DropoutSchedule(Callback):
    """Dropout moved linearly from `start` to `end` over the first `steps` optimizer steps,
    then held at `end`; logged as train/dropout. Some recipes start high against early
    overfitting and lower it as the model needs its capacity, or the reverse.

        trainer:
          callbacks:
            - class_path: gpt.callbacks.DropoutSchedule
              init_args: {start: 0.2, end: 0.0, steps: 1000}
    """

    def __init__(self, start: float = 0.1, end: float = 0.0, steps: int = 1000):
        for name, p in (("start", start), ("end", end)):
            if not 0 <= p < 1:
                raise ValueError(f"DropoutSchedule {name} must be in [0, 1), got {p}")
        if steps < 1:
            raise ValueError(f"DropoutSchedule steps must be >= 1, got {steps}")
        self.start, self.end, self.steps = start, end, steps

    def value(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(1.0, step / self.steps)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Found once, set at every step.
        self.dropouts = [m for m in pl_module.modules() if isinstance(m, nn.Dropout)]
        self.attentions = [m for m in pl_module.modules() if isinstance(getattr(m, "dropout", None), float)]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        p = self.value(trainer.global_step)
        for module in self.dropouts:
            module.p = p
        for module in self.attentions:  # attention's dropout inside SDPA is a float
            module.dropout = p
        if (trainer.global_step + 1) % max(1, trainer.log_every_n_steps) == 0:
            pl_module.log("train/dropout", p)
