"""Problems for reinforcement learning: a question to ask the model, and whatever a reward
function needs to check its answer (model.objective grpo; the step is gpt/train/grpo.py).

    {"question": "47+85", "answer": "132"}                         gpt/data/arithmetic.py's
    {"question": "Natalia sold ...", "answer": "... #### 72"}     GSM8K's

A problem is any JSON object with the question's field; the reward is called with the
completion and the whole object. The question is asked as the user's message through the chat
template the model was fine-tuned with (its checkpoint's), as the evaluation asks a chat model.
A mistake in a file is one error naming the file and line.

Plain Python, no Lightning.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gpt.data.datasets import as_list
from gpt.data.instructions import read_json_records
from gpt.data.sources import HubDataset
from gpt.tokenizers.base import Tokenizer


@dataclass(frozen=True)
class ProblemData:
    """Problems whose answers a program checks, in place of data.corpus (model.objective grpo).

    Args:
        path: A .jsonl (one a line) or .json (one array) file of problems: JSON objects with the
            question (field `question`) and what the reward reads (e.g. answer).
        hub: A Hugging Face dataset of such problems, in place of path: {path: openai/gsm8k,
            name: main}.
        held_out: The problems validation scores, a file as path (unset: data.val_fraction of
            the problems, shuffled with data.seed).
        reward: The reward, a function named module:function, called as reward(completion,
            problem) -> a number: gpt/eval/checkers.py's answer checks serve as they are, e.g.
            gpt.eval.checkers:exact_match or gpt.eval.checkers:gsm8k_correct.
        check: What validation counts as right (val/accuracy), named as reward (unset: the
            reward, its mean).
        reward_errors: A reward that raises, returns something other than a number, or takes
            longer than reward_timeout: raise (stop the run with an error naming it and the
            completion) or zero (score it 0 and count it: train/reward_errors).
        reward_timeout: Seconds a reward may take for one completion.
        question: The field that holds the question.
    """

    path: str | None = None
    hub: HubDataset | None = None
    held_out: str | None = None
    reward: str = "gpt.eval.checkers:exact_match"
    check: str | None = None
    reward_errors: Literal["raise", "zero"] = "raise"
    reward_timeout: float = 10.0
    question: str = "question"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hub is None):
            raise ValueError("data.problems needs one of path (a .json/.jsonl file) or hub (a dataset)")
        if self.reward_timeout <= 0:
            raise ValueError(f"data.problems.reward_timeout must be > 0 seconds, got {self.reward_timeout}")


def to_problem(value: Any, where: str, question: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a problem must be a JSON object, got {type(value).__name__}")
    text = value.get(question)
    if not isinstance(text, str) or not text.strip():
        fields = ", ".join(map(repr, value)) or "none"
        raise ValueError(f"{where}: the problem has no text in {question!r} (data.problems.question); it has {fields}")
    return value


def read_problems(source: str | Path, question: str) -> list[dict[str, Any]]:
    """The problems of a .json or .jsonl file, checked."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"problems file {str(path)!r} does not exist; give a .json or .jsonl file")
    if path.suffix not in (".json", ".jsonl"):
        raise ValueError(f"problems file {str(path)!r} is not .json or .jsonl")
    problems = [to_problem(value, where, question) for value, where in read_json_records(path)]
    if not problems:
        raise ValueError(f"problems file {str(path)!r} holds no problems")
    return problems


def read_hub_problems(hub: HubDataset, question: str) -> list[dict[str, Any]]:
    rows = hub.load(instead="a local .json/.jsonl file with data.problems.path")
    return [to_problem(dict(row), f"{hub.path}[{i}]", question) for i, row in enumerate(rows)]


class ProblemSet:
    """The data of a reinforcement-learning run, as InstructionSet is a fine-tuning run's: the
    problems, read once; the held-out ones; batches as lists of problems. The tokenizer and the
    template are the model's own (its checkpoint's): nothing is added."""

    template = None  # the model's, from its checkpoint (LitGPT.template)

    def __init__(self, settings: ProblemData):
        self.settings = settings
        self._problems: list[dict[str, Any]] | None = None

    def read(self) -> list[dict[str, Any]]:
        if self._problems is None:
            s = self.settings
            self._problems = read_hub_problems(s.hub, s.question) if s.hub else read_problems(s.path, s.question)
        return self._problems

    def tokenizer(self, base: Tokenizer) -> Tokenizer:
        return base

    def splits(self, tokenizer: Tokenizer, block_size: int, val_fraction: float, seed: int) -> tuple[list, list]:
        """(training problems, held-out problems); every question checked to encode."""
        problems = self.read()
        if self.settings.held_out is not None:
            train, held_out = problems, read_problems(self.settings.held_out, self.settings.question)
        else:
            order = list(range(len(problems)))
            random.Random(seed).shuffle(order)
            n_val = max(1, round(len(problems) * val_fraction))
            if len(problems) - n_val < 1:
                raise ValueError(f"{len(problems)} problems are too few for a training and a held-out set")
            train, held_out = [problems[i] for i in order[:-n_val]], [problems[i] for i in order[-n_val:]]
        for i, p in enumerate(train + held_out):
            try:
                tokenizer.encode(p[self.settings.question])
            except ValueError as e:
                which = f"held-out problem {i - len(train)}" if i >= len(train) else f"problem {i}"
                raise ValueError(f"{which}: the model's tokenizer cannot write its question ({e})") from None
        return train, held_out

    def grouping(self, examples: list, batch: int) -> dict:
        return {}

    def collate(self, tokenizer: Tokenizer) -> Any:
        return as_list
