"""Running tasks on a model: where each task's data is, a progress bar over every item, the
table on the terminal and the JSON file of results.

    loaded = load_tasks(["lambada", "piqa"], data_dirs(None), limit=500)
    results = run_tasks(subject, loaded, EvalSettings())
    print(table(results)); write_results("evals/x.json", subject, results, {...})

Every task's data is found and checked, and every item encoded, before the first is scored:
a missing file or a text the tokenizer cannot encode stops the run at once, and the JSON is
written only when every task is done. Plain torch, no Lightning.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gpt.eval.subject import Subject
from gpt.eval.task import EvalSettings, Task, TaskResult
from gpt.eval.tasks import task_named
from gpt.eval.tasks.choice import check_encodable
from gpt.files import write_text

ROOT = Path(__file__).resolve().parents[2]  # the project's root


def data_dirs(given: str | Path | None) -> list[Path]:
    """Where task data is looked for: the folder given (--data_dir) alone, or data/eval then
    ../shared/data/eval, from the current folder and from the project's root."""
    if given is not None:
        return [Path(given)]
    found = [base / sub for base in (Path.cwd(), ROOT) for sub in (Path("data/eval"), Path("../shared/data/eval"))]
    return list({p.resolve(): p for p in found}.values())


def find_data(task: Task, dirs: list[Path]) -> Path:
    """The first folder that holds all of the task's files; a task that downloads its data
    (HellaSwag) downloads it into the first folder when none does."""
    files = getattr(task, "files", ())
    for folder in dirs:
        if all((folder / f).is_file() for f in files):
            return folder
    if hasattr(task, "download"):
        task.download(dirs[0])
        return dirs[0]
    raise FileNotFoundError(
        f"the {task.name} data ({', '.join(files)}) is not in {' or '.join(str(d) for d in dirs)}: put it in "
        "data/eval/ (docs/evaluate.md, Data, says where it comes from), or give its folder with --data_dir"
    )


def load_tasks(names: list[str], dirs: list[Path], limit: int | None) -> list[tuple[Task, list[dict[str, Any]]]]:
    """Each named task (once) and its items, the data found and checked."""
    tasks = [task_named(name) for name in dict.fromkeys(names)]  # an unknown name before any file is read
    return [(task, task.load(find_data(task, dirs), limit)) for task in tasks]


def run_tasks(
    subject: Subject, loaded: list[tuple[Task, list[dict[str, Any]]]], settings: EvalSettings
) -> list[TaskResult]:
    """Each task's result, in order; one progress bar over all their items."""
    for task, items in loaded:
        check_encodable(task.name, subject.tokenizer, items)
    model = subject.model.to(settings.device)
    results = []
    with tqdm(total=sum(len(items) for _, items in loaded), unit="item", dynamic_ncols=True) as bar:
        for task, items in loaded:
            bar.set_description(task.name)
            start = time.perf_counter()
            result = task.evaluate(model, subject.tokenizer, items, replace(settings, progress=bar.update))
            result.settings["seconds"] = round(time.perf_counter() - start, 2)
            results.append(result)
    return results


def table(results: list[TaskResult]) -> str:
    """One row a metric (an MMLU subject's only in the JSON), with its standard error, and per
    task how many items, shots, items cut by the context, and the prompt."""
    lines = [f"{'task':<16} {'metric':<12} {'value':>12} {'stderr':>11} {'n':>7} {'shots':>5} {'cut':>5}  prompt"]
    for r in results:
        first = True
        for metric, score in r.metrics.items():
            if "/" in metric:
                continue
            counts = f"{r.n:>7} {r.shots:>5} {r.truncated:>5}  {r.settings.get('prompt', '')}" if first else ""
            lines.append(
                f"{r.task if first else '':<16} {metric:<12} {score.value:>12.4f} {score.stderr:>11.4f} {counts}"
            )
            first = False
    return "\n".join(line.rstrip() for line in lines)


def run_record(command: list[str], limit: int | None, settings: EvalSettings, plain: bool) -> dict[str, Any]:
    """How the scores were made, as the JSON's "run" holds it: the command, the items a task,
    whether a chat model was asked plain prompts, the settings and torch's version. A report
    card reuses a file whose run asks for what it asks for (gpt/eval/card.py)."""
    run = {"command": command, "limit": limit, "plain": plain}
    keys = ("device", "batch_size", "num_samples", "temperature", "seed", "max_new_tokens")
    return run | {k: getattr(settings, k) for k in keys} | {"torch": torch.__version__}


def results_json(subject: Subject, results: list[TaskResult], run: dict[str, Any], samples: bool) -> dict[str, Any]:
    """The file's contents: the checkpoint's identity, how the run was made, and per task every
    metric's value and standard error, n, shots, items cut, settings (and with samples, the
    per-item records)."""
    tasks = {}
    for r in results:
        tasks[r.task] = {
            "metrics": {m: {"value": s.value, "stderr": s.stderr} for m, s in r.metrics.items()},
            "n": r.n,
            "shots": r.shots,
            "truncated": r.truncated,
            "settings": r.settings,
        } | ({"items": r.items} if samples else {})
    return {"checkpoint": subject.identity, "run": run, "tasks": tasks}


def default_output(identity: dict[str, Any]) -> Path:
    """evals/NAME.json, NAME from the checkpoint's path: lightning_logs/RUN/version_0/checkpoints/last.ckpt
    gives evals/RUN-version_0-last.json."""
    path = Path(identity["path"])
    parts = [p for p in path.parent.parts[-3:] if p not in ("/", "..", ".", "checkpoints")]
    return Path("evals") / ("-".join([*parts, path.stem if path.suffix == ".ckpt" else path.name]) + ".json")


def write_results(path: str | Path, contents: dict[str, Any]) -> Path:
    write_text(path, json.dumps(contents, indent=2) + "\n")  # atomic: a whole file or none
    return Path(path)
