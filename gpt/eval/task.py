"""What every benchmark task gives and returns, so that one command, one report and one
training callback can run any of them.

    task = TASKS["piqa"]                                   # a Task
    items = task.load(data_dir, limit=500)                 # its items, checked, in file order
    result = task.evaluate(model, tokenizer, items, EvalSettings(device="cpu"))
    result.metrics["acc"].value, result.metrics["acc"].stderr, result.n

Plain torch, no Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gpt.data.templates import Template
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer


@dataclass(frozen=True)
class Score:
    """One metric of one task: its value and the standard error of that mean over the items."""

    value: float
    stderr: float


def mean_and_stderr(values: list[float]) -> Score:
    """The mean and its standard error with the sample standard deviation (n - 1), as
    lm-evaluation-harness's `mean_stderr` computes it; 0 for a single item."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Score(mean, 0.0)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Score(mean, math.sqrt(variance / n))


@dataclass
class EvalSettings:
    """How a task is run: where, how many items a forward, and for generation tasks how many
    samples an item and the sampling settings. `chat_template` is set for a chat model: its
    items are asked through the template rather than as plain text."""

    device: str = "cpu"
    batch_size: int = 32
    chat_template: Template | None = None
    num_samples: int = 1  # generation tasks: completions an item (pass@k needs k <= num_samples)
    temperature: float = 0.0  # generation tasks: 0 is greedy
    max_new_tokens: int | None = None  # generation tasks: None is the task's own default
    seed: int = 1337
    progress: Callable[[int], None] = lambda done: None  # called with the items finished since the last call


@dataclass
class TaskResult:
    """A task's scores: metrics by name, over n items, with `shots` examples before each, of
    which `truncated` lost their start to the model's context; `settings` says how it was
    scored (style, prompt kind: "chat" or "plain"); `items` holds one record per item for
    checking item by item."""

    task: str
    metrics: dict[str, Score]
    n: int
    shots: int = 0
    truncated: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)


class Task(Protocol):
    """A benchmark: its data, and how a model is scored on it."""

    name: str

    def load(self, data_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
        """The first `limit` items (all when None) of the task's file(s) in data_dir, each checked:
        a malformed line is a ValueError naming the file and line."""
        ...

    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult: ...
