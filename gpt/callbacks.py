"""Lightning callbacks: tokens/s for token batches, and a JSON-lines writer for predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, ThroughputMonitor


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
        self._file(trainer).parent.mkdir(parents=True, exist_ok=True)
        self._file(trainer).write_text("", encoding="utf-8")  # a new run starts a new file

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        with self._file(trainer).open("a", encoding="utf-8") as f:
            for record in prediction:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
