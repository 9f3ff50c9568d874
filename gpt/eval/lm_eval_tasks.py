"""lm-evaluation-harness task configs that read our local files: the same tasks as its own YAMLs
(lambada_openai, piqa, mmlu_SUBJECT; prompts, targets, metrics), with the data written as the
JSON that its Hugging Face datasets hold. To check our numbers with lm-eval itself, offline:

    import lm_eval
    from lm_eval.tasks import TaskManager
    configs = lm_eval_tasks("../shared/data/eval", ["lambada", "piqa", "mmlu_anatomy"], "tmp/lm_eval", limit=100)
    lm_eval.simple_evaluate(model="hf", model_args={"pretrained": "out/my-gpt"}, tasks=configs,
                            task_manager=TaskManager(include_defaults=False), log_samples=True)

The files are converted from the raw data, not from our tasks' items, so that a mistake in our
loaders shows as a difference instead of being copied to both sides (tests/test_eval_parity.py).
Needs no lm-eval to write the configs. Plain Python.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from gpt.eval.tasks.files import MMLU_SHA256

MMLU_PROMPT = (
    "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
)


def lm_eval_tasks(data_dir: str | Path, names: list[str], folder: str | Path, limit: int | None = None) -> list[dict]:
    """Task configs for lm_eval.simple_evaluate(tasks=...), the first `limit` items of each
    (of each MMLU subject), their data written into folder. names: lambada, piqa, mmlu,
    mmlu_SUBJECT."""
    data, folder = Path(data_dir), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    configs = []
    for name in names:
        if name == "lambada":
            configs.append(lambada(data, folder, limit))
        elif name == "piqa":
            configs.append(piqa(data, folder, limit))
        elif name == "mmlu" or name.removeprefix("mmlu_") in MMLU_SHA256:
            subjects = list(MMLU_SHA256) if name == "mmlu" else [name.removeprefix("mmlu_")]
            configs += [mmlu(data, folder, subject, limit) for subject in subjects]
        else:
            raise ValueError(f"no lm-eval config for {name!r} here; lambada, piqa, mmlu and mmlu_SUBJECT have one")
    return [{**c, "dataset_path": "json", "test_split": "test"} for c in configs]


def written(folder: Path, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The records as name.jsonl, and the dataset_kwargs that load it (its cache in folder too)."""
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return {"data_files": {"test": str(path)}, "cache_dir": str(folder / "cache")}


def lines(path: Path, limit: int | None) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[:limit]


def lambada(data: Path, folder: Path, limit: int | None) -> dict:
    records = [json.loads(line) for line in lines(data / "lambada" / "lambada_test.jsonl", limit)]
    return {
        "task": "lambada",
        "dataset_kwargs": written(folder, "lambada", records),
        "output_type": "loglikelihood",
        "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
        "doc_to_target": "{{' '+text.split(' ')[-1]}}",
        "metric_list": [
            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        ],
    }


def piqa(data: Path, folder: Path, limit: int | None) -> dict:
    goals = lines(data / "piqa" / "valid.jsonl", limit)
    labels = lines(data / "piqa" / "valid-labels.lst", limit)
    records = [{**json.loads(g), "label": int(y)} for g, y in zip(goals, labels)]
    return {
        "task": "piqa",
        "dataset_kwargs": written(folder, "piqa", records),
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{goal}}\nAnswer:",
        "doc_to_target": "label",
        "doc_to_choice": "{{[sol1, sol2]}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }


def mmlu(data: Path, folder: Path, subject: str, limit: int | None) -> dict:
    """cais/mmlu's records (question, subject, choices, answer as an index) of a subject's CSV."""
    with open(data / "mmlu" / "test" / f"{subject}_test.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[:limit]
    records = [{"question": r[0], "subject": subject, "choices": r[1:5], "answer": "ABCD".index(r[5])} for r in rows]
    about = subject.replace("_", " ")
    return {
        "task": f"mmlu_{subject}",
        "dataset_kwargs": written(folder, f"mmlu_{subject}", records),
        "output_type": "multiple_choice",
        "description": f"The following are multiple choice questions (with answers) about {about}.\n\n",
        "doc_to_text": MMLU_PROMPT,
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
