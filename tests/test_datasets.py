"""gpt/data/datasets.py: training and evaluation windows, examples of natural length, padding."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gpt.data.datasets import (
    EvalSampler,
    EvalWindows,
    PadBatch,
    ResumableSampler,
    TrainWindows,
    grad_accumulation,
    split_examples,
)
from gpt.model.masking import IGNORE_INDEX


def test_train_windows_every_offset():
    ids = np.arange(20, dtype=np.uint16)
    ds = TrainWindows(ids, block_size=4, stride=1)
    # offsets 0..15: the last window needs ids[15:20]
    assert len(ds) == 16
    x, y = ds[15]
    assert x.tolist() == [15, 16, 17, 18]
    assert y.tolist() == [16, 17, 18, 19]
    assert x.dtype == torch.int64


def test_train_windows_with_stride():
    ids = np.arange(20, dtype=np.uint16)
    ds = TrainWindows(ids, block_size=4, stride=4)
    assert len(ds) == 4  # offsets 0, 4, 8, 12; 16 would need ids[16:21]
    assert [ds[i][0][0].item() for i in range(len(ds))] == [0, 4, 8, 12]
    assert len(TrainWindows(np.arange(21, dtype=np.uint16), block_size=4, stride=4)) == 5


@pytest.mark.parametrize("n", [9, 10, 11, 17, 100])
def test_eval_windows_score_every_target_exactly_once(n):
    ids = np.arange(n, dtype=np.uint16)
    ds = EvalWindows(ids, block_size=4)
    scored = []
    for i in range(len(ds)):
        x, y = ds[i]
        assert len(x) == len(y) == 4
        assert torch.equal(x[y != IGNORE_INDEX] + 1, y[y != IGNORE_INDEX])  # y is x shifted by one
        scored += y[y != IGNORE_INDEX].tolist()
    assert sorted(scored) == list(range(1, n))  # every target id 1..n-1, once


def test_paragraphs_and_lines():
    text = "A:\nSpeak.\n\n\nB:\nNo.\n  \n\nC:\n"
    assert split_examples(text, "paragraphs") == ["A:\nSpeak.\n", "B:\nNo.\n", "C:\n"]
    assert split_examples(text, "lines") == ["A:\n", "Speak.\n", "B:\n", "No.\n", "C:\n"]  # blank lines dropped


def test_pad_batch_causal_shifts_and_pads():
    a, b = np.array([1, 2, 3, 4]), np.array([5, 6])
    x, y, attention_mask = PadBatch(pad_id=0, shift=True)([a, b])
    assert x.tolist() == [[1, 2, 3], [5, 0, 0]]
    assert y.tolist() == [[2, 3, 4], [6, IGNORE_INDEX, IGNORE_INDEX]]  # padding is never a target
    assert attention_mask.tolist() == [[True, True, True], [True, False, False]]


def test_pad_batch_masked_keeps_the_example_as_its_own_target():
    x, y, attention_mask = PadBatch(pad_id=9, shift=False)([np.array([1, 2, 3]), np.array([4])])
    assert x.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert y.tolist() == [[1, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert torch.equal(x[attention_mask], y[attention_mask])  # the model picks its own targets


def test_train_windows_over_shards_never_span_two(tmp_path):
    shards = []
    for i, n in enumerate((10, 3, 7)):  # the middle shard is too short for a window of 4 + 1
        path = tmp_path / f"{i}.bin"
        np.arange(100 * i, 100 * i + n, dtype=np.uint16).tofile(path)
        shards.append(np.memmap(path, dtype=np.uint16, mode="r"))
    windows = TrainWindows(shards, block_size=4, stride=2)
    starts = [int(windows[i][0][0]) for i in range(len(windows))]
    assert starts == [0, 2, 4, 200, 202]
    for i in range(len(windows)):
        x, y = windows[i]
        assert torch.equal(y[:-1], x[1:]) and int(y[-1]) - int(x[0]) == 4  # one shard: consecutive ids
    copy = pickle.loads(pickle.dumps(windows))  # what a spawned DataLoader worker gets
    assert isinstance(copy.shards[0], np.memmap) and torch.equal(copy[4][0], windows[4][0])


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_rank_and_worker_trains_on_its_own_windows(world_size):
    """The union of the ranks' batches in a step is the one-process batch of world_size times its
    size, and no window is seen by two ranks or two DataLoader workers."""
    ids = np.arange(500, dtype=np.int64)
    windows = TrainWindows(ids, block_size=4, stride=4)
    one = list(ResumableSampler(len(windows), seed=3))
    seen = []
    for rank in range(world_size):
        sampler = ResumableSampler(len(windows), seed=3, rank=rank, world_size=world_size)
        loader = DataLoader(windows, batch_size=2, sampler=sampler, num_workers=2, drop_last=True)
        seen.append([int(x[0]) // 4 for batch in loader for x in batch[0]])
    flat = [i for s in seen for i in s]
    assert len(flat) == len(set(flat)) == (len(windows) // world_size // 2) * 2 * world_size  # whole batches
    step0 = sorted(i for s in seen for i in s[:2])
    assert step0 == sorted(one[: 2 * world_size])


@pytest.mark.parametrize("n,world_size", [(7, 2), (9, 4), (2, 3)])
def test_eval_sampler_gives_every_item_to_one_rank_once(n, world_size):
    shares = [list(EvalSampler(n, rank, world_size)) for rank in range(world_size)]
    assert sorted(i for s in shares for i in s) == list(range(n))
    assert [len(EvalSampler(n, r, world_size)) for r in range(world_size)] == [len(s) for s in shares]


def test_grad_accumulation_follows_from_tokens_per_step():
    assert grad_accumulation(524_288, batch_size=16, block_size=1024, world_size=8) == 4
    assert grad_accumulation(1024, batch_size=8, block_size=64, world_size=1) == 2
    with pytest.raises(
        ValueError,
        match=r"tokens_per_step 1,000 is not a multiple .*\(2 devices x batch_size 8 x "
        r"block_size 64 = 1,024\); use e.g. --data.tokens_per_step 1024",
    ):
        grad_accumulation(1000, batch_size=8, block_size=64, world_size=2)


def test_shards_must_leave_a_training_window_after_validation():
    from gpt.data.datasets import check_shards

    with pytest.raises(ValueError, match="the corpus has no text"):
        check_shards([], [], block_size=4, stride=4)
    with pytest.raises(ValueError, match="the corpus has 14 tokens, of which the first 10 are validation"):
        check_shards([np.zeros(4)], [np.zeros(10)], block_size=4, stride=4)
    check_shards([np.zeros(5)], [np.zeros(10)], block_size=4, stride=4)  # one window of 4 + 1: enough
