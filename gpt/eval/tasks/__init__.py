"""The benchmark tasks by name: TASKS["piqa"] is a Task (gpt/eval/task.py).

    lambada          LAMBADA, OpenAI's version: last-word accuracy and perplexity
    piqa             PIQA validation: acc, acc_norm
    mmlu             MMLU's 57 subjects (mmlu_SUBJECT for one): acc, acc_macro, SUBJECT/acc
    hellaswag        HellaSwag validation as lm-evaluation-harness scores it: acc, acc_norm
    hellaswag_llmc   HellaSwag as llm.c scores it
    gsm8k            GSM8K test: generate, extract the final number, exact match
    humaneval        HumanEval: generate a function body, run its tests, pass@1 (pass@k)

A task's module is imported when the task is first asked for. Plain Python, no Lightning.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping

from gpt.eval.task import Task
from gpt.eval.tasks.files import MMLU_SHA256

# name -> (module in gpt.eval.tasks, the Task in it)
SOURCES = {
    "lambada": ("lambada", "TASK"),
    "piqa": ("piqa", "TASK"),
    "mmlu": ("mmlu", "TASK"),
    "hellaswag": ("hellaswag", "TASK"),
    "hellaswag_llmc": ("hellaswag", "LLMC_TASK"),
    "gsm8k": ("gsm8k", "TASK"),
    "humaneval": ("humaneval", "TASK"),
} | {f"mmlu_{subject}": ("mmlu", "SUBJECT_TASKS") for subject in MMLU_SHA256}


class Registry(Mapping[str, Task]):
    """TASKS: a mapping of names to tasks that imports a task's module when it is asked for."""

    def __getitem__(self, name: str) -> Task:
        if name not in SOURCES:
            raise KeyError(name)
        module, attribute = SOURCES[name]
        try:
            found = getattr(importlib.import_module(f"gpt.eval.tasks.{module}"), attribute)
        except ModuleNotFoundError as e:
            if e.name != f"gpt.eval.tasks.{module}":
                raise
            raise ValueError(f"task {name!r} is not in this version of the project (no gpt/eval/tasks/{module}.py)")
        return found[name] if isinstance(found, dict) else found

    def __iter__(self) -> Iterator[str]:
        return iter(SOURCES)

    def __len__(self) -> int:
        return len(SOURCES)


TASKS = Registry()


def task_named(name: str) -> Task:
    """TASKS[name], or a ValueError that suggests the closest name."""
    if name not in SOURCES:
        close = difflib.get_close_matches(name, list(SOURCES), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        main = [n for n in SOURCES if not n.startswith("mmlu_")]
        raise ValueError(f"unknown task {name!r}; {hint}the tasks: {', '.join(main)}, and mmlu_SUBJECT for one subject")
    return TASKS[name]
