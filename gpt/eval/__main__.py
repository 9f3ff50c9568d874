"""How good is this model? Benchmarks, offline, scored as lm-evaluation-harness scores them.

    python -m gpt.eval CKPT --tasks lambada,piqa,mmlu,gsm8k,humaneval,hellaswag --limit 500

CKPT: a checkpoint of ours (full, LoRA, fine-tuned), a run folder (its newest last.ckpt) or a
Hugging Face GPT-2 folder. A progress bar with an ETA, a table on the terminal, and a JSON file
of results (--output, default evals/NAME.json). The tasks, their scoring and data:
docs/evaluate.md.
"""

from __future__ import annotations

import sys

import torch

from gpt.errors import exit_on_user_error
from gpt.eval.run import (
    data_dirs,
    default_output,
    load_tasks,
    results_json,
    run_record,
    run_tasks,
    table,
    write_results,
)
from gpt.eval.subject import load_subject
from gpt.eval.task import EvalSettings

DEFAULT_TASKS = "lambada,piqa,mmlu"  # the ones whose data is in ../shared/data/eval and that need no generation


def parser():
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="python -m gpt.eval", description=(__doc__ or "").strip().splitlines()[0])
    p.add_argument("ckpt", type=str, help="a checkpoint (.ckpt), a run folder, or a Hugging Face GPT-2 folder")
    p.add_argument("--tasks", type=str, default=DEFAULT_TASKS, help="comma-separated, e.g. lambada,piqa,mmlu,hellaswag")
    p.add_argument(
        "--limit", type=int | None, default=None, help="the first N items of each task (of each MMLU subject)"
    )
    p.add_argument(
        "--data_dir",
        type=str | None,
        default=None,
        help="the folder of the data (default: data/eval, then ../shared/data/eval)",
    )
    p.add_argument("--output", type=str | None, default=None, help="the JSON file of results (default evals/NAME.json)")
    p.add_argument("--batch_size", type=int, default=32, help="sequences a forward pass")
    p.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--plain",
        type=bool,
        nargs="?",
        const=True,
        default=False,
        help="plain prompts for a chat model too (no template)",
    )
    p.add_argument(
        "--samples",
        type=bool,
        nargs="?",
        const=True,
        default=False,
        help="per-item records in the JSON (each choice's score)",
    )
    p.add_argument("--num_samples", type=int, default=1, help="generation tasks: completions an item (pass@k)")
    p.add_argument("--temperature", type=float, default=0.0, help="generation tasks: 0 is greedy")
    p.add_argument("--max_new_tokens", type=int | None, default=None, help="generation tasks: None is the task's")
    p.add_argument("--seed", type=int, default=1337)
    return p


def main(args: list[str] | None = None) -> None:
    a = parser().parse_args(args)
    if a.limit is not None and a.limit < 1:
        raise ValueError(f"--limit must be at least 1 (or left out for every item), got {a.limit}")
    if a.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {a.batch_size}")
    names = [n.strip() for n in a.tasks.split(",") if n.strip()]
    if not names:
        raise ValueError("--tasks names no task; e.g. --tasks lambada,piqa,mmlu")
    loaded = load_tasks(names, data_dirs(a.data_dir), a.limit)  # a bad name or file before the model loads
    subject = load_subject(a.ckpt)
    settings = EvalSettings(
        device=a.device,
        batch_size=a.batch_size,
        chat_template=None if a.plain else subject.template,
        num_samples=a.num_samples,
        temperature=a.temperature,
        max_new_tokens=a.max_new_tokens,
        seed=a.seed,
    )
    results = run_tasks(subject, loaded, settings)
    print(table(results))
    command = ["python", "-m", "gpt.eval", *(sys.argv[1:] if args is None else args)]
    run = run_record(command, a.limit, settings, a.plain)
    output = write_results(a.output or default_output(subject.identity), results_json(subject, results, run, a.samples))
    print(f"wrote {output}")


if __name__ == "__main__":
    exit_on_user_error(main)
