"""What the model trains on: windows of the running text, or examples of their natural
length (paragraphs, lines) padded per batch.

    TrainWindows     every (or every stride-th) window of block_size + 1 ids: x = ids[:-1], y = ids[1:]
                     (of one array of ids, or of several shards: a window never spans two)
    EvalWindows      windows that score every target of a split exactly once
    EvalSampler      a rank's share of an evaluation set, with nothing repeated to even the shares
    split_examples   paragraphs or lines; example_splits: them encoded, cut to what one example holds
    hold_out         a corpus of documents smaller than a shard: a share of it for validation
    PadBatch         a collate function: examples of different lengths -> (x, y, attention_mask)
    ResumableSampler a shuffled order per epoch that a resumed run can enter part-way through
    grad_accumulation micro-batches per optimizer step, from the tokens a step should see

Plain torch and numpy, no Lightning.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gpt.model.masking import IGNORE_INDEX  # targets with this value are not scored

log = logging.getLogger(__name__)


class TrainWindows(Dataset):
    """Windows of block_size + 1 ids starting every `stride` ids (stride 1 = every offset), in
    one array of ids or in each of several (shards), numbered one after the other."""

    def __init__(self, ids: np.ndarray | list[np.ndarray], block_size: int, stride: int = 1):
        self.shards = ids if isinstance(ids, list) else [ids]
        self.block_size, self.stride = block_size, stride
        counts = [len(range(0, len(s) - block_size, stride)) for s in self.shards]
        self.first = np.cumsum([0, *counts]).tolist()  # the number of the first window of each shard

    def __len__(self) -> int:
        return self.first[-1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = bisect.bisect_right(self.first, i) - 1
        o = (i - self.first[k]) * self.stride
        chunk = torch.from_numpy(self.shards[k][o : o + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]

    def __getstate__(self) -> dict:
        # A DataLoader worker started by spawn gets a pickled copy: send the memory-mapped
        # shards as their file names (pickling a memmap would copy all of its ids).
        state = dict(self.__dict__)
        state["shards"] = [(s.filename, s.dtype) if isinstance(s, np.memmap) else s for s in self.shards]
        return state

    def __setstate__(self, state: dict) -> None:
        shards = state["shards"]
        state["shards"] = [np.memmap(s[0], dtype=s[1], mode="r") if isinstance(s, tuple) else s for s in shards]
        self.__dict__.update(state)


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


class EvalSampler(DistributedSampler):
    """A rank's share of an evaluation set: every world_size-th item, starting at its rank.
    DistributedSampler evens the shares by repeating items, which would score some tokens
    twice; here the shares may differ by one and every item is scored exactly once. (A
    DistributedSampler so that Lightning keeps it rather than putting its own in.)"""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        super().__init__(range(n), num_replicas=world_size, rank=rank, shuffle=False)
        self.items = range(rank, n, world_size)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


def grad_accumulation(tokens_per_step: int, batch_size: int, block_size: int, world_size: int) -> int:
    """Micro-batches each device accumulates so that an optimizer step sees tokens_per_step
    tokens: tokens_per_step / (world_size x batch_size x block_size), which must be whole."""
    micro = world_size * batch_size * block_size
    if tokens_per_step < micro or tokens_per_step % micro:
        fits = max(1, round(tokens_per_step / micro)) * micro
        raise ValueError(
            f"data.tokens_per_step {tokens_per_step:,} is not a multiple of the tokens one micro-batch of every "
            f"device holds ({world_size} devices x batch_size {batch_size} x block_size {block_size} = {micro:,}); "
            f"use e.g. --data.tokens_per_step {fits} or change data.batch_size"
        )
    return tokens_per_step // micro


def split_text(ids: np.ndarray, val_fraction: float, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A running text's ids: the first 1 - val_fraction for training, the rest for validation;
    each must hold one window of block_size + 1."""
    n_train = int(len(ids) * (1 - val_fraction))
    splits = ids[:n_train], ids[n_train:]
    for name, split in zip(("training", "validation"), splits):
        if len(split) < block_size + 1:
            raise ValueError(
                f"the corpus has {len(ids):,} tokens, so its {name} split has {len(split):,}: fewer than "
                f"block_size + 1 = {block_size + 1} needed for one example. Use a longer corpus or a smaller "
                "--model.block_size"
            )
    return splits


def check_shards(train: list[np.ndarray], val: list[np.ndarray], block_size: int, stride: int) -> None:
    """A corpus of documents must leave at least one training window after its validation ids."""
    n_val, n = sum(len(s) for s in val), sum(len(s) for s in train + val)
    if n == 0:
        raise ValueError("the corpus has no text: its files hold no documents (or only empty ones)")
    if len(TrainWindows(train, block_size, stride)) == 0 or not val:
        raise ValueError(
            f"the corpus has {n:,} tokens, of which the first {n_val:,} are validation: too few left for one "
            f"training window of block_size + 1 = {block_size + 1}. Use a smaller --data.val_tokens or "
            "--data.shard_tokens, or a longer corpus"
        )


def hold_out(shards: list[np.ndarray], val_fraction: float, block_size: int) -> tuple[list, list]:
    """(train, val) of a corpus of documents that fits in its validation shard: its first
    val_fraction of ids (at least one window) for validation, the rest for training."""
    ids = np.concatenate(shards) if len(shards) > 1 else shards[0]
    n_val = max(int(len(ids) * val_fraction), block_size + 1)
    log.info(
        f"The corpus has {len(ids):,} tokens, less than one shard: holding out its first {n_val:,} "
        f"({val_fraction:.0%}, data.val_fraction) for validation; data.val_tokens sets another count"
    )
    return [ids[n_val:]], [ids[:n_val]]


def split_examples(text: str, mode: Literal["paragraphs", "lines"]) -> list[str]:
    """The pieces of text that are examples: paragraphs (the blocks between blank lines: a
    speech of Tiny Shakespeare) or lines, each ending in one newline; blank ones dropped."""
    if mode == "paragraphs":
        pieces = [p.strip("\n") + "\n" for p in re.split(r"\n\s*\n", text)]
    else:
        pieces = [line + "\n" for line in text.splitlines()]
    return [p for p in pieces if p.strip()]


def example_splits(
    text: str, mode: Literal["paragraphs", "lines"], tokenizer: Any, keep: int, val_fraction: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, val): the text's examples encoded, each cut to `keep` tokens, the last
    val_fraction of them held out."""
    pieces = split_examples(text, mode)
    examples = [np.array(e[:keep], dtype=np.int64) for e in tokenizer.encode_batch(pieces) if len(e) >= 2]
    n_train = int(len(examples) * (1 - val_fraction))
    if n_train == 0 or n_train == len(examples):
        raise ValueError(f"the corpus has {len(examples)} {mode}: too few for a training and a validation split")
    return examples[:n_train], examples[n_train:]


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


class ResumableSampler(DistributedSampler):
    """The indices of an epoch in a shuffled order, entered part-way through when a run resumes.

    The order of every epoch is a function of the seed and the epoch alone, the very order
    DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed)) gives: per epoch
    the loader draws one number (its workers' seed), then a permutation, then one more
    permutation when the epoch runs out. So a run resumed at (epoch, batches done) sees
    exactly the batches an uninterrupted one would, and runs from before resuming existed
    keep their numbers. Under DDP each rank takes every world_size-th index. (A subclass of
    DistributedSampler so that Lightning keeps it rather than wrapping it in its own.)
    """

    def __init__(
        self,
        n: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        epoch_now: Callable[[], int] | None = None,
        lengths: list[int] | None = None,
        group: int = 1,
        repeats: int = 1,
        batch: int = 1,
    ):
        super().__init__(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.n, self.skip = n, 0
        self.epoch_now = epoch_now  # the trainer's epoch, which set_epoch's argument is not always
        # Examples of different lengths: within each run of `group` shuffled indices, longest
        # first, so that a batch holds examples of about one length and little padding.
        self.lengths, self.group = lengths, group
        # GRPO's updates on one batch of rollouts: each batch of `batch` indices `repeats` times in a row.
        self.repeats, self.batch = repeats, batch

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this as each epoch begins; a new epoch starts at its beginning. (On a
        run resumed at an epoch's end Lightning passes the epoch after the one it trains:
        epoch_now, the trainer's own count, says which one it is.)"""
        epoch = self.epoch_now() if self.epoch_now is not None else epoch
        if epoch != self.epoch:
            self.epoch, self.skip = epoch, 0

    def resume(self, epoch: int, samples_done: int) -> None:
        """The next pass starts at epoch `epoch` after the first `samples_done` of this rank's indices."""
        self.epoch, self.skip = epoch, samples_done

    def permutation(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        for epoch in range(self.epoch + 1):
            torch.empty((), dtype=torch.int64).random_(generator=generator)  # the loader's draw for workers
            order = torch.randperm(self.n, generator=generator)
            if epoch < self.epoch:
                torch.randperm(self.n, generator=generator)  # RandomSampler's draw as an epoch runs out
        if self.lengths is not None:
            lengths = torch.as_tensor(self.lengths)
            chunks = order.split(self.group)
            order = torch.cat([c[torch.argsort(lengths[c], descending=True, stable=True)] for c in chunks])
        return order

    def __len__(self) -> int:
        per_rank = self.n // self.num_replicas
        return per_rank if self.repeats == 1 else per_rank // self.batch * self.batch * self.repeats

    def __iter__(self):
        per_rank = self.n // self.num_replicas
        order = self.permutation()[self.rank : per_rank * self.num_replicas : self.num_replicas]
        if self.repeats > 1:
            batches = order[: per_rank // self.batch * self.batch].view(-1, 1, self.batch)
            order = batches.expand(-1, self.repeats, -1).flatten()
        skip, self.skip = self.skip, 0  # only the first pass after resume() starts part-way
        yield from order[skip:].tolist()


class ResumableLoader(DataLoader):
    """The training loader, saved in every checkpoint and restored on resume (Lightning's
    stateful dataloaders): its state is where the training data stands, so a resumed run
    carries on with the very batch an uninterrupted one would train on next."""

    position: Callable[[], dict[str, int]]  # set by GPTDataModule.train_dataloader

    def state_dict(self) -> dict[str, int]:
        return self.position()

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = state["epoch"], state["batches"]
        if batches >= len(self):  # that epoch was done: the next one starts
            epoch, batches = epoch + 1, 0
        self.sampler.resume(epoch, batches * self.batch_size)


def as_list(batch: list) -> list:
    """The collate of items a model step reads as they are (predict's prompt items, GRPO's
    problems): a batch stays a list of dicts."""
    return batch
