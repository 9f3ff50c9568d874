"""PIQA (Bisk et al., 2020): physical commonsense. A goal and two solutions; which one works?

Scored as lm-evaluation-harness's `piqa`: "Question: {goal}\\nAnswer:" continued by each
solution, acc and acc_norm (gpt/eval/tasks/choice.py). The validation split (1,838), since the
test labels are not public; chance is 0.5. Plain Python, no Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt.eval.task import EvalSettings, TaskResult
from gpt.eval.tasks.choice import evaluate_choices
from gpt.eval.tasks.files import check_limit, checked_file, json_object, numbered_lines
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer


class PIQA:
    name = "piqa"
    files = ("piqa/valid.jsonl", "piqa/valid-labels.lst")

    def load(self, data_dir: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
        """The first `limit` questions: valid.jsonl line N with the label on line N of valid-labels.lst."""
        check_limit(limit)
        questions, labels = (checked_file(data_dir, name) for name in self.files)
        items = []
        for (where, line), (label_where, label) in zip(numbered_lines(questions, limit), numbered_lines(labels, limit)):
            record = json_object(line, where, {"goal": str, "sol1": str, "sol2": str})
            if label.strip() not in ("0", "1"):
                raise ValueError(f"{label_where}: a label must be 0 or 1, got {label.strip()!r:.40}")
            items.append(
                {
                    "query": f"Question: {record['goal']}\nAnswer:",
                    "choices": [record["sol1"], record["sol2"]],
                    "label": int(label),
                    "where": where,
                }
            )
        return items

    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult:
        return evaluate_choices(self.name, model, tokenizer, items, settings, lm_eval_task="piqa")


TASK = PIQA()
