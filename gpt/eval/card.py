"""A report card: a run, or a chain of runs (pretrain -> SFT -> DPO), on one markdown page.

    python -m gpt.eval.card lightning_logs/assistant_pretrain_cpu lightning_logs/assistant_sft_cpu \\
        lightning_logs/assistant_dpo_cpu --names pretrain,sft,dpo --tasks lambada,piqa,mmlu --limit 100

Each stage (a run folder, a checkpoint or a Hugging Face GPT-2 folder, in the order given) gets
a column: what its checkpoint recorded of its training (parameters, tokens seen, training time
and hardware, validation loss), and its benchmark scores as `python -m gpt.eval` gives them:
read from that command's JSON (evals/NAME.json) when it scored the same checkpoint with the
same tasks and limit, else scored here and written there. Beside them, each metric's chance
level and GPT-2 124M's published scores with their sources (gpt/eval/published.py). The page
is written whole or not at all. Plain torch, no Lightning.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt.errors import exit_on_user_error
from gpt.eval.published import SOURCES, always_one_choice, chance, published
from gpt.eval.run import data_dirs, default_output, load_tasks, results_json, run_record, run_tasks, write_results
from gpt.eval.subject import Subject, checkpoint_subject, hf_subject, is_hf_folder, resolve_subject
from gpt.eval.task import EvalSettings
from gpt.eval.tasks.choice import check_encodable
from gpt.files import write_text
from gpt.interop.checkpoint import load_checkpoint, run_checkpointing

# What a JSON of results must share with this card's request to be read rather than scored again
# (besides the checkpoint's sha256 and the tasks); device and batch size change no score.
SAME_RUN = ("limit", "plain", "num_samples", "temperature", "seed", "max_new_tokens")


@dataclass
class Stage:
    name: str
    subject: Subject
    checkpoint: dict[str, Any] | None  # None for a Hugging Face folder: no training record
    results: dict[str, Any] | None = None  # the JSON of results (gpt/eval/run.py results_json)
    output: Path | None = None  # where that JSON is
    reused: bool = False  # read from an earlier `python -m gpt.eval`, not scored here


def parser():
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="python -m gpt.eval.card", description=(__doc__ or "").strip().splitlines()[0])
    p.add_argument("stages", nargs="+", type=str, help="run folders, checkpoints or Hugging Face folders, in order")
    p.add_argument("--names", type=str | None, default=None, help="the stages' names, e.g. pretrain,sft,dpo")
    p.add_argument("--tasks", type=str, default="lambada,piqa,mmlu", help="comma-separated, as python -m gpt.eval")
    p.add_argument("--limit", type=int | None, default=None, help="the first N items of each task (of each subject)")
    p.add_argument("--data_dir", type=str | None, default=None, help="the task data (default: as python -m gpt.eval)")
    p.add_argument("--output", type=str, default="evals/report_card.md", help="the markdown file written")
    p.add_argument("--batch_size", type=int, default=32, help="sequences a forward pass")
    p.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--plain", type=bool, nargs="?", const=True, default=False, help="plain prompts for chat models too")
    return p


def main(args: list[str] | None = None) -> None:
    a = parser().parse_args(args)
    if a.limit is not None and a.limit < 1:
        raise ValueError(f"--limit must be at least 1 (or left out for every item), got {a.limit}")
    if Path(a.output).is_dir():
        raise ValueError(f"--output {a.output!r} is a folder; give a file name, e.g. {a.output}/report_card.md")
    names = [n.strip() for n in (a.names or "").split(",") if n.strip()] or None
    if names is not None and len(names) != len(a.stages):
        raise ValueError(f"--names gives {len(names)} names for {len(a.stages)} stages; give one name a stage")
    tasks = [n.strip() for n in a.tasks.split(",") if n.strip()]
    loaded = load_tasks(tasks, data_dirs(a.data_dir), a.limit)  # a bad task or file before any model loads
    stages = [open_stage(path, name) for path, name in zip(a.stages, names or [None] * len(a.stages))]
    for stage in stages:  # every stage checked before the first is scored
        for task, items in loaded:
            check_encodable(task.name, stage.subject.tokenizer, items)
    command = ["python", "-m", "gpt.eval.card", *(sys.argv[1:] if args is None else args)]
    for stage in stages:
        template = None if a.plain else stage.subject.template
        settings = EvalSettings(device=a.device, batch_size=a.batch_size, chat_template=template)
        run = run_record(command, a.limit, settings, a.plain)
        stage.output = default_output(stage.subject.identity)
        stage.results = earlier_results(stage.output, stage.subject.identity, [t.name for t, _ in loaded], run)
        stage.reused = stage.results is not None
        if stage.results is None:
            scored = run_tasks(stage.subject, loaded, settings)
            stage.results = results_json(stage.subject, scored, run, samples=False)
            write_results(stage.output, stage.results)
        print(f"{stage.name}: {'read' if stage.reused else 'wrote'} {stage.output}", file=sys.stderr)
    guesses = {task.name: always_one_choice(items) for task, items in loaded}
    text = card(stages, guesses, command, a.limit)
    write_text(a.output, text)  # atomic: the whole page or none
    print(text)
    print(f"wrote {a.output}", file=sys.stderr)


def open_stage(given: str, name: str | None) -> Stage:
    """A stage's model and checkpoint, read and checked (a folder without a checkpoint, a damaged
    file: an error naming it)."""
    path = resolve_subject(given)
    if is_hf_folder(path):
        return Stage(name or path.name, hf_subject(path), None)
    checkpoint = load_checkpoint(path)
    return Stage(name or stage_name(path), checkpoint_subject(path, checkpoint), checkpoint)


def stage_name(path: Path) -> str:
    """lightning_logs/EXPERIMENT/version_N/checkpoints/last.ckpt is EXPERIMENT; a file elsewhere its stem."""
    return path.parents[2].name if path.parent.name == "checkpoints" and len(path.parents) > 2 else path.stem


def earlier_results(path: Path, identity: dict[str, Any], tasks: list[str], run: dict[str, Any]) -> dict | None:
    """The JSON `python -m gpt.eval` (or an earlier card) wrote at path, when it scored these very
    bytes (sha256) on every task asked with the same limit and settings; else None."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or identity["sha256"] is None:  # a sharded checkpoint has no one file to hash
        return None
    same = saved.get("checkpoint", {}).get("sha256") == identity["sha256"]
    same = same and all(saved.get("run", {}).get(k, "missing") == run[k] for k in SAME_RUN)
    return saved if same and set(tasks) <= set(saved.get("tasks", {})) else None


def training_record(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint of `main.py fit` says of its training: its speed monitor's tokens, wall
    time and hardware (gpt/train/callbacks.py), the last and best validation loss, and how the
    run was set up. Empty for a Hugging Face folder."""
    if checkpoint is None:
        return {}
    speed = checkpoint.get("callbacks", {}).get("SpeedMonitor", {})
    best = run_checkpointing(checkpoint)
    hp = checkpoint.get("hyper_parameters", {})
    last, lowest = best.get("current_score"), checkpoint.get("best_val_loss")
    return {
        "step": checkpoint.get("global_step"),
        "tokens": speed.get("tokens"),
        "seconds": speed.get("seconds") or None,  # 0: a checkpoint from before the time was recorded
        "hardware": speed.get("hardware") or [],
        "val_loss": float(last) if last is not None else None,
        "best_val_loss": float(lowest) if lowest is not None and math.isfinite(lowest) else None,
        "init_from": hp.get("init_from"),
        "objective": hp.get("objective", "causal"),
        "dpo_beta": hp.get("dpo_beta"),
        "lora": hp.get("lora"),
        "template": checkpoint.get("template"),
        # A LoRA run's checkpoint holds its adapters alone: what it trained.
        "adapters": sum(t.numel() for t in checkpoint["state_dict"].values()) if "lora_base" in checkpoint else None,
    }


def card(
    stages: list[Stage], guesses: dict[str, tuple[float, float] | None], command: list[str], limit: int | None
) -> str:
    """The page: how it was made, a table of the stages, the benchmark table and the sources.
    `guesses`: each task in order, with the range of always giving one answer on its items."""
    tasks = list(guesses)
    items = f"the first {limit} items of each task (of each MMLU subject)" if limit else "every item of each task"
    lines = [
        "# Report card",
        "",
        f"`{' '.join(command)}` on {datetime.date.today().isoformat()}, torch {torch.__version__}.",
        "",
        "## Stages",
        "",
        *stages_table(stages, tasks),
        "",
        "The validation loss measures each stage's own objective (pretraining: the next token of held-out text; "
        "instruction tuning: the held-out replies' tokens; DPO: the DPO loss of held-out pairs, ln 2 = 0.693 at its "
        "start): compare it within a stage, not across.",
        "",
        "## Benchmarks",
        "",
        f"Scored as `python -m gpt.eval` scores them, on {items}: each score is a mean with its standard error "
        "(±). *Chance* is what guessing at random scores, and in brackets what always giving the same answer "
        "scores on these items (always the first choice, ..., always the last): the right answers of a subset are "
        "not spread evenly, and a model that prefers one choice scores its share. A score within about two "
        "standard errors of chance, or inside that range, is no better than a guess: it shows the evaluator "
        "scoring a model that has not learned the task, not a fault in it. GPT-2 124M's figures are as "
        "published, over every item, with their sources below.",
        "",
    ]
    table, cited = scores_table(stages, guesses)
    lines += table
    if cited:
        lines += ["", "Sources of the published figures (cited, not claimed):", ""]
        lines += [f"{i}. {SOURCES[key]}" for i, key in enumerate(cited, 1)]
    return "\n".join(lines) + "\n"


def stages_table(stages: list[Stage], tasks: list[str]) -> list[str]:
    records = [training_record(s.checkpoint) for s in stages]
    rows = {
        "checkpoint": [f"`{s.subject.identity['path']}`" for s in stages],
        "sha256, step": [sha_and_step(s) for s in stages],
        "started from": [f"`{r['init_from']}`" if r.get("init_from") else "—" for r in records],
        "training": [objective(r) for r in records],
        "model": [model_shape(s.subject.identity["model_config"]) for s in stages],
        "parameters": [parameters(s, r) for s, r in zip(stages, records)],
        "tokens seen": [f"{r['tokens']:,}" if r.get("tokens") is not None else "not recorded" for r in records],
        "training time": [duration(r["seconds"]) if r.get("seconds") else "not recorded" for r in records],
        "hardware": ["; ".join(r["hardware"]) if r.get("hardware") else "not recorded" for r in records],
        "val loss (best)": [val_loss(r) for r in records],
        "prompts": [prompts(s.results, tasks) for s in stages],
        "scores": [f"`{s.output}` ({'read' if s.reused else 'scored now'})" for s in stages],
    }
    lines = ["| | " + " | ".join(s.name for s in stages) + " |", "| --- |" + " --- |" * len(stages)]
    return lines + [f"| {row} | " + " | ".join(cells) + " |" for row, cells in rows.items()]


def scores_table(stages: list[Stage], guesses: dict[str, tuple[float, float] | None]) -> tuple[list[str], list[str]]:
    """One row a metric (an MMLU subject's only in the JSON) and one of items scored (cut by the
    context); one column a stage; the published figures' sources in the order first cited."""
    head = ["task", "metric", "chance", *(s.name for s in stages), "GPT-2 124M, published"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    cited: list[str] = []
    for task, guess in guesses.items():
        results = [s.results["tasks"][task] for s in stages]
        metrics = dict.fromkeys(m for r in results for m in r["metrics"] if "/" not in m)
        for metric in metrics:
            level = chance(task, metric)
            cells = [score(r["metrics"].get(metric)) for r in results]
            figures = []
            for value, source in published(task, metric):
                cited += [source] if source not in cited else []
                figures.append(f"{value:g} [{cited.index(source) + 1}]")  # as the source gives it
            row = [task, metric, chance_cell(level, guess), *cells, " · ".join(figures) or "—"]
            lines.append("| " + " | ".join(row) + " |")
        counts = [f"{r['n']:,} ({r['truncated']:,} cut)" for r in results]
        lines.append("| " + " | ".join([task, "items", "", *counts, ""]) + " |")
    return lines, cited


# ---- how each cell reads


def number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"


def score(metric: dict[str, float] | None) -> str:
    return "—" if metric is None else f"{number(metric['value'])} ± {number(metric['stderr'])}"


def chance_cell(level: float | None, guess: tuple[float, float] | None) -> str:
    if level is None:
        return "—"
    return f"{level:g}" + (f" ({guess[0]:.3f}–{guess[1]:.3f})" if guess is not None else "")


def sha_and_step(stage: Stage) -> str:
    identity = stage.subject.identity
    sha = identity["sha256"][:12] if identity["sha256"] else "—"
    return f"{sha}, step {identity['step']:,}" if identity["step"] is not None else sha


def objective(record: dict[str, Any]) -> str:
    if not record:
        return "—"
    if record["objective"] == "dpo":
        text = f"preference tuning (DPO, beta {record['dpo_beta']:g})"
    elif record["objective"] == "masked":
        text = "masked language modelling"
    elif record["template"]:
        text = f"instruction tuning, {record['template']} template"
    else:
        text = "next-token prediction"
    lora = record["lora"]
    return text + (f", LoRA r={lora['r']} alpha={lora['alpha']:g}" if lora else "")


def model_shape(config: dict[str, Any]) -> str:
    shape = f"{config['n_layer']} layers x {config['n_embd']} wide, {config['n_head']} heads"
    return f"{shape}; context {config['block_size']:,}, vocabulary {config['vocab_size']:,}"


def parameters(stage: Stage, record: dict[str, Any]) -> str:
    total = f"{stage.subject.identity['parameters']:,}"
    return total + (f" ({record['adapters']:,} in the LoRA adapters trained)" if record.get("adapters") else "")


def duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {s:02d} s" if minutes else f"{seconds:.1f} s"


def val_loss(record: dict[str, Any]) -> str:
    last, best = record.get("val_loss"), record.get("best_val_loss")
    if last is None:
        return "not recorded"
    return f"{last:.4f}" + (f" ({best:.4f})" if best is not None else "")


def prompts(results: dict[str, Any], tasks: list[str]) -> str:
    """How the items were asked: plain text, or through the chat template (LAMBADA always plain)."""
    plain = [task for task in tasks if results["tasks"][task]["settings"].get("prompt", "plain") == "plain"]
    template = results["checkpoint"].get("template")
    if template is None or len(plain) == len(tasks):
        return "plain"
    return f"{template} template" + (f" ({', '.join(plain)}: plain)" if plain else "")


if __name__ == "__main__":
    exit_on_user_error(main)
