"""--ckpt_path: which checkpoint a command means, and what of it the command keeps.

    --ckpt_path last        the newest last.ckpt of this experiment (gpt/train/runs.py)
    --ckpt_path best        the best checkpoint of that same run
    --ckpt_path untrained   validate, test or predict an untrained model, on purpose
    --ckpt_path PATH        any checkpoint file, or a run folder (its newest last.ckpt)

A checkpoint's model settings become the defaults beneath what the config and the command
line say (a resumed run may change its learning rate, never its shape): they are given to the
parser as the first `--model` argument, so every later one wins. The file is checked and read
safely (gpt/interop/checkpoint.py) before any of it is used.

Plain Python over the parsed config; main.py calls it from LightningCLI's public hooks.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

from gpt.interop.checkpoint import (
    best_checkpoint,
    describe_missing,
    hyperparameters,
    model_config,
    newest_last,
    said_checkpoint,
)
from gpt.model.config import FIELDS, GPTConfig
from gpt.train.lit_module import LitGPT
from gpt.train.runs import config_of, experiment_dir

UNTRAINED = "untrained"
LIGHTNINGS = ("hpc", "registry")  # Lightning's own: a SLURM requeue checkpoint, the model registry

# What a checkpoint's hyperparameters may hold that a command takes as its default: LitGPT's
# settings and GPTConfig's fields; vocab_size follows the tokenizer (linked from the data).
MODEL_SETTINGS = (set(inspect.signature(LitGPT).parameters) | set(FIELDS)) - {"config", "sampling", "causal"}
SETTABLE = MODEL_SETTINGS - {"vocab_size"}

# The model's shape: a checkpoint's weights fit no other (vocab_size follows its tokenizer).
ARCHITECTURE = tuple(f for f in FIELDS if f not in ("preset", "vocab_size"))


def resolve_ckpt_path(subcommand: str, config: Any) -> Path | None:
    """The checkpoint file --ckpt_path names, or None for none (a new fit, `untrained`, or
    one of Lightning's own names)."""
    ckpt = config.get("ckpt_path")
    experiment = experiment_dir(config)
    if ckpt in (None, ""):
        if subcommand == "fit":
            return None
        raise ValueError(
            f"{subcommand} needs a trained model: --ckpt_path PATH, or --ckpt_path last for the newest run in "
            f"{experiment}/ (--ckpt_path {UNTRAINED} runs an untrained model, on purpose)"
        )
    if ckpt == UNTRAINED:
        if subcommand == "fit":
            raise ValueError(f"--ckpt_path {UNTRAINED} is for validate, test and predict; fit starts without one")
        return None
    if ckpt in LIGHTNINGS:
        return None
    if ckpt in ("last", "best"):
        last = newest_last(experiment)
        if last is None:
            fix = "start a new run without --ckpt_path" if subcommand == "fit" else "give --ckpt_path PATH"
            if not config.get("config") and (made := configs_of_runs(experiment)):
                fix = f"--ckpt_path {ckpt} needs the --config the run was trained with, e.g. --config {made[0]}"
            why = describe_missing(experiment)
            why += " (is it the --config you trained with?)" if why.endswith(" yet") else ""
            raise FileNotFoundError(f"--ckpt_path {ckpt}: {why}; {fix}")
        path = last if ckpt == "last" else best_checkpoint(last)
        print(f"--ckpt_path {ckpt}: {path}", file=sys.stderr)
        return path
    return said_checkpoint(ckpt, "--ckpt_path ")  # a run folder: its newest last.ckpt


def configs_of_runs(folder: Path) -> list[Path]:
    """The config files whose runs are in folder's subfolders (lightning_logs/X: configs/X.yaml), newest first."""
    runs = sorted((p for p in folder.glob("*/version_*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    return [c for c in dict.fromkeys(config_of(run.parent.name) for run in runs) if c is not None]


def saved_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model settings a checkpoint was trained with, as `--model` takes them."""
    saved = hyperparameters(checkpoint)
    return {k: v for k, v in saved.items() if k in SETTABLE}


def shape_of(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A starting checkpoint's model shape (model.init_from), as `--model` takes it: a run
    fine-tuned from it has the same, unless the config or the command line says otherwise."""
    saved = hyperparameters(checkpoint)
    return {k: saved[k] for k in FIELDS if k in saved and k not in ("vocab_size", "causal")}


def with_settings(args: list[str], subcommand: str, settings: dict[str, Any]) -> list[str]:
    """args with `--model SETTINGS` right after the subcommand: beneath every config and flag
    the user gave, which jsonargparse applies after it."""
    at = args.index(subcommand) + 1
    return [*args[:at], "--model", json.dumps(settings), *args[at:]]


def check_architecture(model: Any, checkpoint: dict[str, Any]) -> None:
    """Refuse settings that change the shape of the checkpoint's model, naming both values."""
    given = {k: model.get(k) for k in FIELDS if k not in ("vocab_size", "causal")}
    mine = GPTConfig(**given, causal=model.get("objective", "causal") != "masked")
    theirs = model_config(checkpoint)
    for field in ARCHITECTURE:
        if getattr(mine, field) != getattr(theirs, field):
            option = "--model.objective" if field == "causal" else f"--model.{field}"
            raise ValueError(
                f"{option} gives {field} {getattr(mine, field)!r} but the checkpoint's model has "
                f"{getattr(theirs, field)!r}; a checkpoint's architecture cannot change: leave {option} out "
                "(or use the config it was trained with)"
            )
    given, saved = lora_shape(model.get("lora")), lora_shape(hyperparameters(checkpoint).get("lora"))
    if given != saved:
        raise ValueError(
            f"--model.lora gives adapters {given} but the checkpoint's are {saved}; adapters cannot change "
            "in a run: leave --model.lora out (only its dropout may change)"
        )


def lora_shape(lora: Any) -> dict[str, Any] | None:
    """What of LoRA's settings makes the model (not the dropout), from a config or a checkpoint."""
    if lora is None:
        return None
    settings = lora.as_dict() if hasattr(lora, "as_dict") else dict(lora)
    return {"r": settings["r"], "alpha": settings["alpha"], "targets": list(settings["targets"])}


def note_changes(model: Any, checkpoint: dict[str, Any], max_steps: int | None) -> None:
    """Resuming: say which of the checkpoint's training settings this run changes (they apply
    from here), and when there is nothing left to train."""
    for key, value in saved_settings(checkpoint).items():
        if key in model and key not in FIELDS and key != "init_from" and plain(model[key]) != plain(value):
            print(
                f"resuming with {key} {plain(model[key])!r} (the checkpoint's run had {plain(value)!r})",
                file=sys.stderr,
            )
    step = checkpoint.get("global_step", 0)
    if max_steps is not None and 0 <= max_steps <= step:
        print(
            f"note: the checkpoint is at step {step} and --trainer.max_steps is {max_steps}: nothing to train "
            "(give a larger --trainer.max_steps to train on)",
            file=sys.stderr,
        )


def plain(value: Any) -> Any:
    """A setting as JSON holds it: a group of settings (model.lora, model.grpo) as parsed or as
    a checkpoint keeps it compare alike."""
    value = value.as_dict() if hasattr(value, "as_dict") else value
    return json.loads(json.dumps(value, default=str))
