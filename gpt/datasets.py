"""What the model trains on: windows of the running text, or examples of their natural
length (paragraphs, lines) padded per batch.

    TrainWindows   every (or every stride-th) window of block_size + 1 ids: x = ids[:-1], y = ids[1:]
    EvalWindows    windows that score every target of a split exactly once
    split_examples paragraphs or lines, each cut to what one example holds
    PadBatch       a collate function: examples of different lengths -> (x, y, attention_mask)

Plain torch and numpy, no Lightning.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from gpt.masking import IGNORE_INDEX  # targets with this value are not scored


class TrainWindows(Dataset):
    """Windows of block_size + 1 ids starting every `stride` ids (stride 1 = every offset)."""

    def __init__(self, ids: np.ndarray, block_size: int, stride: int = 1):
        self.ids, self.block_size = ids, block_size
        self.offsets = range(0, len(ids) - block_size, stride)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.offsets[i]
        chunk = torch.from_numpy(self.ids[o : o + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]


class EvalWindows(Dataset):
    """Non-overlapping windows that score every target of `ids` exactly once.

    The tail that does not fill a whole window gets one more window aligned to the end of
    the split; its targets already scored by the previous window are set to IGNORE_INDEX.
    So the mean loss over all scored targets is the exact loss of the whole split.
    """

    def __init__(self, ids: np.ndarray, block_size: int):
        self.ids, self.block_size = ids, block_size
        n_targets = len(ids) - 1
        full = n_targets // block_size
        self.items = [(i * block_size, 0) for i in range(full)]  # (offset, targets to ignore)
        if n_targets % block_size:
            last = n_targets - block_size
            self.items.append((last, full * block_size - last))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        o, n_ignore = self.items[i]
        chunk = torch.from_numpy(self.ids[o : o + self.block_size + 1].astype(np.int64))
        x, y = chunk[:-1], chunk[1:].clone()
        y[:n_ignore] = IGNORE_INDEX
        return x, y


def split_examples(text: str, mode: Literal["paragraphs", "lines"]) -> list[str]:
    """The pieces of text that are examples: paragraphs (the blocks between blank lines: a
    speech of Tiny Shakespeare) or lines, each ending in one newline; blank ones dropped."""
    if mode == "paragraphs":
        pieces = [p.strip("\n") + "\n" for p in re.split(r"\n\s*\n", text)]
    else:
        pieces = [line + "\n" for line in text.splitlines()]
    return [p for p in pieces if p.strip()]


class PadBatch:
    """Collate examples of different lengths into (x, y, attention_mask): padded on the
    right with <|pad|> to the longest, attention_mask True at the tokens that are not
    padding. Causal (shift): x and y are the example shifted by one, y IGNORE_INDEX at
    padding. Masked: y = x (the model chooses what to hide)."""

    def __init__(self, pad_id: int, shift: bool):
        self.pad_id, self.shift = pad_id, shift

    def __call__(self, examples: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = [len(e) - 1 if self.shift else len(e) for e in examples]
        T = max(lengths)
        x = torch.full((len(examples), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
        for row, (e, n) in enumerate(zip(examples, lengths)):
            e = torch.from_numpy(np.asarray(e, dtype=np.int64))
            x[row, :n] = e[:n]
            y[row, :n] = e[1 : n + 1] if self.shift else e[:n]
        attention_mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
        return x, y, attention_mask
