"""MMLU (Hendrycks et al., 2021): 14,042 four-way questions in 57 subjects, from elementary
mathematics to law. Chance is 0.25.

Scored as lm-evaluation-harness's `mmlu` group (its default prompt, 0-shot):

    The following are multiple choice questions (with answers) about {subject}.

    {question}
    A. {choice A}
    B. ...
    Answer:

continued by " A", " B", " C" or " D" (one token each: the four share one forward pass of
the question). Metrics: `acc` over all questions (lm-eval's mmlu number: its groups weigh
subjects by their size), `acc_macro` the mean of the 57 subjects' accuracies, and each
subject's as `SUBJECT/acc`. `--limit N` takes the first N questions of each subject, as
lm-eval's --limit does on a group. Plain Python, no Lightning.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from gpt.eval.task import EvalSettings, Score, TaskResult, mean_and_stderr
from gpt.eval.tasks.choice import evaluate_choices
from gpt.eval.tasks.files import MMLU_SHA256, check_limit, checked_file
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer

SUBJECTS = tuple(MMLU_SHA256)
LETTERS = ("A", "B", "C", "D")


def read_subject(data_dir: str | Path, subject: str, limit: int | None) -> list[dict[str, Any]]:
    """The first `limit` questions of a subject's CSV file (no header: question, A, B, C, D, answer)."""
    path = checked_file(data_dir, f"mmlu/test/{subject}_test.csv")
    description = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    items = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if limit is not None and len(items) >= limit:
                break
            where = f"{path}, line {reader.line_num}"  # a quoted field may span lines: the record's last
            if len(row) != 6 or row[5] not in LETTERS:
                raise ValueError(
                    f"{where}: expected 6 fields, a question, 4 choices and the answer A-D; got {row!r:.80}"
                )
            question, *choices, answer = row
            lines = [question.strip(), *(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices)), "Answer:"]
            items.append(
                {
                    "system": description,
                    "query": "\n".join(lines),
                    "choices": list(LETTERS),
                    "label": LETTERS.index(answer),
                    "subject": subject,
                    "where": where,
                }
            )
    return items


class MMLU:
    def __init__(self, subjects: tuple[str, ...] = SUBJECTS, name: str = "mmlu"):
        self.subjects, self.name = subjects, name
        self.files = tuple(f"mmlu/test/{s}_test.csv" for s in subjects)

    def load(self, data_dir: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
        """The first `limit` questions of each subject, subject by subject."""
        check_limit(limit)
        return [item for subject in self.subjects for item in read_subject(data_dir, subject, limit)]

    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult:
        lm_eval_task = "mmlu" if len(self.subjects) > 1 else f"mmlu_{self.subjects[0]}"
        result = evaluate_choices(self.name, model, tokenizer, items, settings, lm_eval_task, metrics=("acc",))
        subjects = {}
        for record in result.items:
            subjects.setdefault(record["subject"], []).append(record["acc"])
        if len(subjects) > 1:
            per_subject = {s: mean_and_stderr(acc) for s, acc in subjects.items()}
            result.metrics["acc_macro"] = Score(
                sum(s.value for s in per_subject.values()) / len(per_subject),
                math.sqrt(sum(s.stderr**2 for s in per_subject.values())) / len(per_subject),
            )
            result.metrics |= {f"{s}/acc": score for s, score in per_subject.items()}
        return result


TASK = MMLU()
SUBJECT_TASKS = {f"mmlu_{s}": MMLU((s,), f"mmlu_{s}") for s in SUBJECTS}
