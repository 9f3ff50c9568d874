"""Scoring speed against lm-evaluation-harness's `hf` model: the same model, the same items,
side by side in one run.

    python benchmarks/eval_vs_lm_eval.py [--hf PATH | --preset gpt2] [--tasks piqa,mmlu,lambada]
        [--limit 200] [--batch_size 32] [--device cuda]

The model is a Hugging Face GPT-2 folder (--hf), or the preset's GPT with random weights (the
speed does not depend on them) exported to one. Both sides read the same local files (lm-eval
through gpt/eval/lm_eval_tasks.py) in float32, batch_size sequences a forward pass. Timed, after
a warm-up on a few items:

    lm-eval     simple_evaluate with an HFLM built beforehand: building the requests from the
                documents, tokenizing, its batched loglikelihood (each choice its own row; a
                one-token choice shares the question's row: its logits_cache)
    ours        task.load + task.evaluate (python -m gpt.eval's path): checking the file,
                tokenizing, batched rows in which every request that is a prefix of another
                shares its row
    kv-prefix   the other way to share a context, for the multiple-choice tasks: each item's
                question prefilled once into a KV cache (batch 1), its choices then run as one
                batch against it. One item at a time, so it gains nothing from batching across
                items; its context is cut to leave room for the longest choice.

Prints items/s of each, ours over lm-eval, and whether the accuracies agree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.eval.run import data_dirs, find_data  # noqa: E402
from gpt.eval.scoring import head_only_at  # noqa: E402
from gpt.eval.subject import load_subject  # noqa: E402
from gpt.eval.task import EvalSettings  # noqa: E402
from gpt.eval.tasks import TASKS  # noqa: E402
from gpt.eval.tasks.choice import choice_requests  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.layers import KVCache  # noqa: E402
from gpt.model.models import GPT  # noqa: E402


def synchronized(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[object, float]:
    synchronized(device)
    start = time.perf_counter()
    out = fn()
    synchronized(device)
    return out, time.perf_counter() - start


@torch.no_grad()
def kv_prefix(model: GPT, requests, item_of: list[int], device: str) -> list[float]:
    """Each request's log-likelihood, an item's context prefilled once and its choices batched."""
    lls: list[float] = [0.0] * len(requests)
    by_item: dict[int, list[int]] = {}
    for i, item in enumerate(item_of):
        by_item.setdefault(item, []).append(i)
    for mine in by_item.values():
        conts = [requests[i].continuation for i in mine]
        longest = max(len(c) for c in conts)
        context = requests[mine[0]].context[-(model.config.block_size - longest + 1) :]
        cache = KVCache(model.config, 1)
        last = (torch.tensor([0], device=device), torch.tensor([len(context) - 1], device=device))
        with head_only_at(model, *last):  # the LM head at the context's last position only, as ours
            first = torch.log_softmax(model(torch.tensor([context], device=device), cache=cache)[0].float(), -1)
        scores = [float(first[c[0]]) for c in conts]
        if longest > 1:  # the rest of each choice, all choices as one batch against the shared context
            cache.keys = [k.repeat(len(conts), 1, 1, 1) for k in cache.keys]
            cache.values = [v.repeat(len(conts), 1, 1, 1) for v in cache.values]
            x = torch.zeros(len(conts), longest - 1, dtype=torch.long)
            for row, c in enumerate(conts):
                x[row, : len(c) - 1] = torch.tensor(c[:-1])
            rest = torch.log_softmax(model(x.to(device), cache=cache).float(), -1).cpu()
            for row, c in enumerate(conts):
                scores[row] += float(rest[row, torch.arange(len(c) - 1), torch.tensor(c[1:])].sum())
        for i, score in zip(mine, scores):
            lls[i] = score
    return lls


def lm_eval_configs(data: Path, name: str, folder: Path, limit: int) -> list[dict]:
    """lm-eval's task configs over the first `limit` items, their datasets already built (as
    after a first run: Hugging Face datasets caches them), so that the timing is the scoring's."""
    import datasets

    from gpt.eval.lm_eval_tasks import lm_eval_tasks

    configs = lm_eval_tasks(data, [name], folder, limit)
    for config in configs:
        datasets.load_dataset("json", **config["dataset_kwargs"])
    return configs


def lm_eval_run(lm, configs: list[dict]) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=False)
    return lm_eval.simple_evaluate(model=lm, tasks=configs, task_manager=manager, log_samples=False, bootstrap_iters=0)


def their_acc(results: dict, name: str, n_per_task: dict[str, int]) -> float:
    """lm-eval's acc over the task (MMLU: its subjects weighed by size, as its group does)."""
    tasks = {k: v for k, v in results["results"].items() if k == name or k.startswith(f"{name}_")}
    total = sum(n_per_task[k] for k in tasks)
    return sum(v["acc,none"] * n_per_task[k] for k, v in tasks.items()) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf", default=None, help="a Hugging Face GPT-2 folder (default: --preset, random weights)")
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--tasks", default="piqa,mmlu,lambada")
    parser.add_argument("--limit", type=int, default=200, help="items a task (a subject, for mmlu)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    import datasets
    from lm_eval.models.huggingface import HFLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    tmp = Path(tempfile.mkdtemp(prefix="eval_vs_lm_eval-"))
    folder = args.hf
    if folder is None:
        from gpt.interop.hf import save_hf
        from gpt.tokenizers import TiktokenTokenizer

        torch.manual_seed(0)
        config = GPTConfig(preset=args.preset, vocab_size=50257, bias=True, dropout=0.0)  # GPT-2's layout and BPE
        folder = save_hf(GPT(config), tmp / "model", tokenizer=TiktokenTokenizer("gpt2"))
    subject = load_subject(folder)
    model = subject.model.to(args.device)
    settings = EvalSettings(device=args.device, batch_size=args.batch_size)
    lm = HFLM(pretrained=str(folder), dtype="float32", batch_size=args.batch_size, device=args.device)
    described = args.preset if args.hf is None else folder
    print(f"{described} on {args.device}, batch {args.batch_size}, torch {torch.__version__}")
    header = f"{'task':<14} {'items':>6} {'lm-eval/s':>10} {'ours/s':>8} {'ratio':>6} {'kv-prefix/s':>12}"
    print(f"{header}  acc ours / lm-eval")
    for name in args.tasks.split(","):
        task, data = TASKS[name], find_data(TASKS[name], data_dirs(args.data_dir))
        task.evaluate(model, subject.tokenizer, task.load(data, 2), settings)  # warm-up
        lm_eval_run(lm, lm_eval_configs(data, name, tmp / f"warm-{name}", 2))
        configs = lm_eval_configs(data, name, tmp / name, args.limit)
        (result, ours) = timed(
            lambda: task.evaluate(model, subject.tokenizer, task.load(data, args.limit), settings), args.device
        )
        theirs_results, theirs = timed(lambda: lm_eval_run(lm, configs), args.device)
        n_per_task = {}
        for record in result.items:
            key = f"mmlu_{record['subject']}" if "subject" in record else name
            n_per_task[key] = n_per_task.get(key, 0) + 1
        kv = "-"
        if name != "lambada":
            items = task.load(data, args.limit)
            requests, item_of = choice_requests(name, subject.tokenizer, items, settings)
            kv_lls, seconds = timed(lambda: kv_prefix(model, requests, item_of, args.device), args.device)
            ours_lls = [ll for record in result.items for ll in record["loglikelihoods"]]
            whole = [i for i, item in enumerate(item_of) if not result.items[item]["truncated"]]
            differs = max((abs(kv_lls[i] - ours_lls[i]) for i in whole), default=0.0)  # the same numbers?
            kv = f"{result.n / seconds:.1f}" + (f" (differs by {differs:.1e})" if differs > 1e-3 else "")
        acc = f"{result.metrics['acc'].value:.4f} / {their_acc(theirs_results, name, n_per_task):.4f}"
        speeds = f"{result.n / theirs:>10.1f} {result.n / ours:>8.1f} {theirs / ours:>5.2f}x {kv:>12}"
        print(f"{name:<14} {result.n:>6} {speeds}  {acc}")


if __name__ == "__main__":
    main()
