"""gpt/datasets.py: training and evaluation windows, examples of natural length, padding."""

import numpy as np
import pytest
import torch

from gpt.datasets import EvalWindows, PadBatch, TrainWindows, split_examples
from gpt.masking import IGNORE_INDEX


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
