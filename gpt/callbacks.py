"""Lightning callbacks for token batches."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ThroughputMonitor


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
