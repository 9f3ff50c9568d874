"""What main.py's LightningCLI does besides wiring: old flag names, the settings each
subcommand implies, the callbacks every fit gets, the message at the end of a fit, and how a
command ends (one `error:` line for a mistake, 128 + the signal's number for a signal, with
the command that resumes).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from gpt.errors import USER_ERRORS, Interrupted, exit_on_user_error, one_line, stop_on_signals
from gpt.interop.checkpoint import said_checkpoint
from gpt.interop.init import is_checkpoint
from gpt.model.config import GPT2_SMALL, PRESETS
from gpt.model.generation import SamplingSettings
from gpt.train.callbacks import SpeedMonitor, StepProgressBar
from gpt.train.checkpointing import LatestCheckpoint, RunCheckpoint, SafeCheckpointIO, SaveOnInterrupt, ValidateAtTheEnd
from gpt.train.runs import SAVE_DIR, config_of, resume_command
from gpt.train.tensorboard import TensorBoardPictures

SUBCOMMANDS = ("fit", "validate", "test", "predict")

# Predict's settings were LitGPT's own arguments before they became one group.
MOVED_FLAGS = {f"--model.{f.name}": f"--model.sampling.{f.name}" for f in fields(SamplingSettings)}
MOVED_FLAGS["--model.sample_seed"] = "--model.sampling.seed"


def renamed_flags(argv: list[str]) -> list[str]:
    """argv with predict's settings under their old names (--model.temperature) given their
    new ones (--model.sampling.temperature), and a note saying so: old commands keep working."""
    out = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if name in MOVED_FLAGS:
            print(f"note: {name} is now {MOVED_FLAGS[name]}; the old name still works", file=sys.stderr)
            arg = MOVED_FLAGS[name] + equals + value
        out.append(arg)
    return out


def subcommand_of(argv: list[str]) -> str | None:
    return next((a for a in argv if a in SUBCOMMANDS), None)


def check_tokenizer_kind(argv: list[str], tokenizer: Any) -> None:
    """Refuse `--data.tokenizer.kind char --data.tokenizer.vocab_size 512`: jsonargparse would
    quietly take the kind whose settings fit (bpe) over the kind that was asked for."""
    asked = None
    for i, arg in enumerate(argv):
        if arg == "--data.tokenizer.kind" and i + 1 < len(argv):
            asked = argv[i + 1]
        elif arg.startswith("--data.tokenizer.kind="):
            asked = arg.partition("=")[2]
    got = getattr(tokenizer, "kind", "char") if tokenizer is not None else "char"
    if asked is not None and asked != got:
        raise ValueError(
            f"--data.tokenizer.kind {asked} was given with settings of kind {got}; "
            "each kind takes only its own (char: none; tiktoken: encoding; bpe: vocab_size, pattern, path)"
        )


def model_block_size(preset: str | None, block_size: int | None) -> int:
    """The model's block_size: as given, else its preset's (an unknown preset is refused, with
    the known ones listed, when the model is built)."""
    if block_size is not None:
        return block_size
    return PRESETS.get(preset or "gpt2", {}).get("block_size", GPT2_SMALL["block_size"])


def settings_of_subcommand(subcommand: str, config: Any, ckpt_path: str | None, checkpoint: dict | None) -> None:
    """What a subcommand implies, set in its parsed config: a checkpoint brings its own
    tokenizer and weights (and names the base under LoRA adapters); a new run started from a
    checkpoint of ours takes its tokenizer; only fit writes checkpoints and makes a run folder."""
    init_from = starting_point(config.model.init_from)
    if ckpt_path:
        # The checkpoint's weights replace starting ones, which may be gone; but adapters alone
        # need their base.
        init_from = checkpoint.get("lora_base") if checkpoint else None
    config.model.init_from = init_from
    if not config.data.tokenizer_from:
        # Ids mean what they meant in training, and predicting needs no training corpus.
        config.data.tokenizer_from = ckpt_path or (init_from if init_from and is_checkpoint(init_from) else None)
    if subcommand == "fit":
        if config.model.objective == "grpo" and config.checkpoint.monitor == "val/loss":
            # GRPO validates with no loss: its best checkpoint is the most accurate on the held-out problems.
            config.checkpoint.monitor, config.checkpoint.mode = "val/accuracy", "max"
            config.checkpoint.filename = config.checkpoint.filename.replace("val{val/loss", "acc{val/accuracy")
        # A resumed run's checkpoints are in its folder on purpose: it carries on where they left off.
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        # A CSVLogger's new version_N holds only what this run wrote in it: the lock, the config.
        warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
        return
    config.trainer.enable_checkpointing = False
    # ... so the checkpoint callback's state, which Lightning warns is not restored, is not needed.
    warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks")
    # validate and test print their figures, predict its text: none leaves a version_N folder
    # that `--ckpt_path last` would take for a training run.
    config.trainer.logger = False
    if subcommand == "predict":
        config.trainer.enable_progress_bar = False  # the samples stream to stdout


def lightning_habits(trainer: Any) -> None:
    """What a Lightning user gives that main.py's defaults would refuse: a fraction as
    val_check_interval (0.5: twice an epoch) needs check_val_every_n_epoch, Lightning's default 1
    (main.py's is None: it validates every val_check_interval steps, across epochs)."""
    if isinstance(trainer.val_check_interval, float) and trainer.check_val_every_n_epoch is None:
        trainer.check_val_every_n_epoch = 1


def starting_point(init_from: str | None) -> str | None:
    """model.init_from as a file: a run folder (lightning_logs/NAME) means its newest last.ckpt;
    a Hugging Face folder or model name is kept as it is. A run folder or checkpoint that is
    not there says so, with the command that makes it."""
    if not init_from:
        return init_from
    path = Path(init_from)
    if path.is_dir() and not (path / "config.json").exists():
        try:
            return str(said_checkpoint(init_from, "--model.init_from "))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--model.init_from {init_from}: {e}; {how_to_make(path)}") from None
    if not path.exists() and (is_checkpoint(path) or SAVE_DIR in path.parts):
        what = "checkpoint" if is_checkpoint(path) else "run folder"
        raise FileNotFoundError(f"--model.init_from {init_from}: there is no such {what}; {how_to_make(path)}")
    return init_from


def how_to_make(path: Path) -> str:
    """The command that makes the run a path names (lightning_logs/X... comes from configs/X.yaml,
    lightning_logs/a_b from configs/a/b.yaml), or what to do without one."""
    parts = path.parts
    config = config_of(parts[parts.index(SAVE_DIR) + 1] if SAVE_DIR in parts[:-1] else path.name)
    if config is not None:
        return f"make it first with: python main.py fit --config {config}"
    return "train that run first (python main.py fit --config ...), or give an existing checkpoint or run folder"


def run_callbacks(subcommand: str, trainer: dict, config: Any, interrupt: SaveOnInterrupt) -> tuple[list, Any]:
    """The callbacks a Trainer gets besides those the config names, and its checkpoint IO. For
    fit: the run's checkpoints (its best, RunCheckpoint, and last.ckpt beside it, unless
    checkpointing is off; in the run's folder whatever ModelCheckpoints the user adds), a clean
    stop on SIGINT and SIGTERM, a validation after the last step, a progress bar of steps
    (unless the user gives one), and with a logger the speed, charts, samples and pictures.
    Checkpoint files are written atomically and read safely (SafeCheckpointIO)."""
    given = trainer.get("callbacks") or []
    callbacks: list[Callback] = list(given) if isinstance(given, list) else [given]
    run = None
    if subcommand == "fit":
        callbacks += [interrupt, ValidateAtTheEnd()]
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(StepProgressBar())
        if trainer.get("logger") not in (False, None):
            callbacks += [SpeedMonitor(), TensorBoardPictures(dict(config.data.items()))]
        if trainer.get("enable_checkpointing") is not False:
            best = config["checkpoint"].as_dict()
            interval, save_last = best.pop("train_time_interval"), best.pop("save_last")
            run = RunCheckpoint(**best, save_last=False)
            callbacks += [run, *([LatestCheckpoint(interval)] if save_last else [])]
    return callbacks, SafeCheckpointIO(run)


def describe_fit_end(trainer: L.Trainer) -> None:
    """Say where the run's checkpoints are and how to sample from them, and what the
    ModelCheckpoints the user added saved."""
    if not trainer.is_global_zero:
        return
    last = next((c.last_model_path for c in trainer.checkpoint_callbacks if isinstance(c, LatestCheckpoint)), "")
    lines = [line for callback in trainer.checkpoint_callbacks for line in saved_by(callback, last)]
    if last:
        lines.append(f"last checkpoint: {last}")
        command = shlex.join(["python", "main.py", "predict", "--ckpt_path", last])
        lines.append(f"sample from it: {command} --model.sampling.max_new_tokens 500")
    if lines:
        print("\n".join(lines), file=sys.stderr)


def saved_by(callback: Callback, run_last: str) -> list[str]:
    """What a ModelCheckpoint saved, a line each: the run's best checkpoint, or the best (the
    newest, without a monitor) and the last.ckpt of one the user added (unless it is the run's:
    one without a dirpath saves in the run's folder)."""
    if not isinstance(callback, ModelCheckpoint):
        return []
    ours = isinstance(callback, RunCheckpoint)
    lines = []
    if callback.best_model_path and callback.monitor is None:
        lines.append(f"{'checkpoint' if ours else 'your ModelCheckpoint: newest'}: {callback.best_model_path}")
    elif callback.best_model_path:
        score = callback.best_model_score
        score = f" ({callback.monitor} {float(score):.4f})" if score is not None else ""
        lines.append(
            f"{'best checkpoint' if ours else 'your ModelCheckpoint: best'}{score}: {callback.best_model_path}"
        )
    if callback.last_model_path and not ours and Path(callback.last_model_path).resolve() != Path(run_last).resolve():
        lines.append(f"your ModelCheckpoint: last: {callback.last_model_path}")
    return lines


class ToStderr(logging.StreamHandler):
    """A handler that writes to sys.stderr as it is when a message comes (not as it was when the
    handler was made), so that a command run from Python shows its messages where its caller says."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def show_progress_messages() -> None:
    """The plain modules' progress messages (download, encoding, BPE training) on stderr, once
    per machine (rank 0), as Lightning shows its own; and no warnings a user cannot act on."""
    logger = logging.getLogger("gpt")
    if not logger.handlers:
        handler = ToStderr()
        handler.addFilter(lambda record: rank_zero_only.rank == 0)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    # Lightning 2.6 calls a torch API that torch 2.13 deprecates.
    warnings.filterwarnings("ignore", message="`isinstance\\(treespec, LeafSpec\\)` is deprecated")
    # DPO's frozen reference model stays in eval mode on purpose (no dropout in its log-probabilities).
    warnings.filterwarnings("ignore", message="Found \\d+ module\\(s\\) in eval mode at the start of training")
    # Lightning advertises its cloud logger on every run.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())


def run(command: Callable[[SaveOnInterrupt], Any]) -> None:
    """Run a CLI command and end it as a user expects: a mistake is one `error:` line and exit
    1 (2 for a bad argument); a signal during fit saves, says how to resume and exits 128 + its
    number; a signal anywhere else stops at once with 128 + its number."""
    show_progress_messages()
    stop_on_signals()
    interrupt = SaveOnInterrupt()
    subcommand = subcommand_of(sys.argv[1:])
    try:
        # ImportError: a callback or logger whose package is not installed (Lightning names it).
        exit_on_user_error(lambda: command(interrupt), (*USER_ERRORS, MisconfigurationException, ImportError))
    except argparse.ArgumentError as e:  # jsonargparse: a value of the wrong type, an unknown option
        print(f"error: {one_line(e)}\n(python main.py {subcommand or 'fit'} --help lists the options)", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:  # fit stopped by SIGINT or SIGTERM (see SaveOnInterrupt)
        if interrupt.interrupted is None:
            print("error: stopped by a signal before training began; nothing to save", file=sys.stderr)
            sys.exit(128 + (interrupt.received or 15))
        signum, step, path = interrupt.interrupted
        if interrupt.rank == 0:  # one line for the run, not one a process
            name = signal.Signals(signum).name
            if path is None:
                print(f"{name} at step {step}: stopped (fast_dev_run saves nothing)", file=sys.stderr)
            else:
                print(
                    f"{name} at step {step}: saved {path}; resume with: {resume_command(sys.argv[1:])}", file=sys.stderr
                )
        sys.exit(128 + signum)
    except (Interrupted, KeyboardInterrupt) as e:  # a signal outside training
        signum = e.args[0] if isinstance(e, Interrupted) else signal.SIGINT
        what = "fit stopped before training began; nothing to save" if subcommand == "fit" else f"{subcommand} stopped"
        print(f"{signal.Signals(signum).name}: {what}", file=sys.stderr)
        sys.exit(128 + signum)
