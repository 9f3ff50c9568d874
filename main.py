"""Train, evaluate and sample GPTs from the command line.

    python main.py fit --config configs/shakespeare_char_cpu.yaml
    python main.py fit --config configs/shakespeare_char_cpu.yaml --ckpt_path last   # resume
    python main.py predict --config configs/shakespeare_char_cpu.yaml --ckpt_path last --data.prompt "ROMEO:"
    python main.py fit --help

LightningCLI builds the CLI and the YAML configs from the typed __init__ arguments of
LitGPT (model.*, with GPTConfig's fields among them), GPTDataModule (data.*), Lightning's
Trainer (trainer.*) and the checkpoint callback (checkpoint.*). The defaults below are
what every experiment shares; a config says only what differs.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import shlex
import signal
import sys
import warnings
from contextlib import ExitStack
from dataclasses import fields
from pathlib import Path
from typing import Any

from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from gpt.errors import USER_ERRORS, Interrupted, exit_on_user_error, one_line, stop_on_signals
from gpt.interop.checkpoint import best_checkpoint, hyperparameters, load_checkpoint, model_config
from gpt.model.config import FIELDS, GPT2_SMALL, PRESETS, GPTConfig
from gpt.model.generation import SamplingSettings
from gpt.tokenizers.settings import check_tokenizer_kind
from gpt.train.callbacks import SafeCheckpointIO, SaveOnInterrupt, SpeedMonitor, ValidateAtTheEnd
from gpt.train.datamodule import GPTDataModule, apply_tokens_per_step
from gpt.train.lit_module import LitGPT
from gpt.train.runs import describe_missing, hold_run, new_run, newest_last, resume_command, run_name, run_of
from gpt.train.tensorboard import TensorBoardPictures

TRAINER_DEFAULTS = {
    # TensorBoard under lightning_logs/<the config's name>/version_N (see run_name).
    "logger": {
        "class_path": "gpt.train.tensorboard.RunLogger",  # Lightning's TensorBoardLogger, without an `epoch` card
        "init_args": {"save_dir": "lightning_logs", "name": "", "default_hp_metric": False},
    },
    # Validate every val_check_interval optimizer steps, not once an epoch: an epoch of
    # every window of a corpus is far longer than most runs.
    "val_check_interval": 250,
    "check_val_every_n_epoch": None,
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 10,
    "gradient_clip_val": 1.0,
}

CHECKPOINT_DEFAULTS = {  # the best validation loss, and the last step
    "monitor": "val/loss",
    "filename": "step{step}-val{val/loss:.3f}",
    "auto_insert_metric_name": False,
    "save_last": True,
}

# --ckpt_path values that name no file: resolved here (see GPTCLI._parse_ckpt_path).
UNTRAINED = "untrained"  # validate, test or predict an untrained model, on purpose

# Predict's settings were LitGPT's own arguments before they became one group.
MOVED_FLAGS = {f"--model.{f.name}": f"--model.sampling.{f.name}" for f in fields(SamplingSettings)}
MOVED_FLAGS["--model.sample_seed"] = "--model.sampling.seed"

# What a checkpoint's hyperparameters may hold: LitGPT's settings and GPTConfig's fields.
MODEL_SETTINGS = (set(inspect.signature(LitGPT).parameters) | set(FIELDS)) - {"config", "sampling", "causal"}

# The model's shape: a checkpoint's weights fit no other (vocab_size follows its tokenizer).
ARCHITECTURE = tuple(f for f in FIELDS if f not in ("preset", "vocab_size"))


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


def model_block_size(preset: str | None, block_size: int | None) -> int:
    """The model's block_size: as given, else its preset's (an unknown preset is refused, with
    the known ones listed, when the model is built)."""
    if block_size is not None:
        return block_size
    return PRESETS.get(preset or "gpt2", {}).get("block_size", GPT2_SMALL["block_size"])


def tensorboard(config) -> Any:
    """The TensorBoardLogger section of the trainer's config, or None (another logger, or none)."""
    logger = config.trainer.logger
    return logger if str(getattr(logger, "class_path", "")).endswith(("TensorBoardLogger", "RunLogger")) else None


def experiment_dir(config) -> Path:
    """The folder whose version_N runs `--ckpt_path last` looks in."""
    logger = tensorboard(config)
    if logger is None:  # no TensorBoard: checkpoints go to default_root_dir/checkpoints
        return Path(config.trainer.default_root_dir or ".")
    return Path(logger.init_args.save_dir) / (logger.init_args.name or "")


class GPTCLI(LightningCLI):
    def __init__(
        self, *args: Any, interrupt: SaveOnInterrupt | None = None, held: ExitStack | None = None, **kwargs: Any
    ):
        self.interrupt = interrupt or SaveOnInterrupt()
        self.held = held or ExitStack()  # the run folder's lock, released when the command ends
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # No --weights_only: checkpoints are only ever read as tensors and plain values.
        return {name: skip | {"weights_only"} for name, skip in LightningCLI.subcommands().items()}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The checkpoint callback every fit gets, configurable as checkpoint.* (see instantiate_trainer).
        parser.add_class_arguments(ModelCheckpoint, "checkpoint", instantiate=False)
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        # Typed once, in the model (or taken from its preset); the data cuts windows of the
        # same length.
        parser.link_arguments(("model.preset", "model.block_size"), "data.block_size", compute_fn=model_block_size)
        # The data serves the objective: a masked model needs <|mask|> in the tokenizer.
        parser.link_arguments("model.objective", "data.objective")
        # Follows from the data (the tokenizer), so it is computed, never typed.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        if args is None:
            sys.argv[1:] = renamed_flags(sys.argv[1:])  # in place: DDP relaunches this very command
        elif isinstance(args, list):
            args = renamed_flags(args)
        self.args = args
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """--ckpt_path: `last` and `best` found among this experiment's runs, the file checked
        and read safely, and its model settings made the defaults beneath what the config
        and the command line say. (In place of Lightning's, which lets the checkpoint's
        settings override the command line's, and reads the file before any check.)"""
        subcommand = self.config.subcommand
        config = self.config[subcommand]
        config.trainer.logger = self.named_logger(config)
        path = self.resolve_ckpt_path(subcommand, config)
        if path is None:
            return
        checkpoint = load_checkpoint(path)
        saved = {k: v for k, v in hyperparameters(checkpoint).items() if not k.startswith("_")}
        settable = MODEL_SETTINGS - {"vocab_size"}  # the tokenizer's, linked from the data
        parser = self._subcommand_parsers[subcommand]
        parser.set_defaults({f"model.{k}": v for k, v in saved.items() if k in settable})
        self.config = self.parser.parse_args(self.args)  # the user's settings over the checkpoint's
        config = self.config[subcommand]
        config.ckpt_path = str(path)
        config.trainer.logger = self.named_logger(config)
        self.check_architecture(config.model, checkpoint)
        if subcommand == "fit":
            self.note_changes(config.model, saved)
            step, max_steps = checkpoint.get("global_step", 0), config.trainer.max_steps
            if max_steps is not None and 0 <= max_steps <= step:
                print(
                    f"note: the checkpoint is at step {step} and --trainer.max_steps is {max_steps}: nothing to train "
                    "(give a larger --trainer.max_steps to train on)",
                    file=sys.stderr,
                )
            version = run_of(path, experiment_dir(config))
            if version is not None and tensorboard(config) is not None:
                # Carry on in the run's own folder, one curve in TensorBoard; what the run logged
                # after this checkpoint (if it was killed later) is hidden: it is trained again.
                config.trainer.logger.init_args.version = version
                config.trainer.logger.init_args.purge_step = checkpoint.get("global_step")

    @staticmethod
    def named_logger(config) -> Any:
        logger = tensorboard(config)
        if logger is not None and not logger.init_args.name:
            logger.init_args.name = run_name(config)
        return config.trainer.logger

    @staticmethod
    def resolve_ckpt_path(subcommand: str, config) -> Path | None:
        """The checkpoint file --ckpt_path names, or None for none."""
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
            config.ckpt_path = None
            return None
        if ckpt in ("hpc", "registry"):
            return None  # Lightning's: a SLURM requeue checkpoint, the model registry
        if ckpt in ("last", "best"):
            last = newest_last(experiment)
            if last is None:
                fix = "start a new run without --ckpt_path" if subcommand == "fit" else "give --ckpt_path PATH"
                raise FileNotFoundError(f"--ckpt_path {ckpt}: {describe_missing(experiment)}; {fix}")
            path = last if ckpt == "last" else best_checkpoint(last)
            print(f"--ckpt_path {ckpt}: {path}", file=sys.stderr)
            return path
        return Path(ckpt)

    @staticmethod
    def check_architecture(model, checkpoint: dict[str, Any]) -> None:
        """Refuse settings that change the shape of the checkpoint's model, naming both values."""
        given = {k: model.get(k) for k in FIELDS if k not in ("vocab_size", "causal")}
        mine = GPTConfig(**given, causal=model.get("objective", "causal") == "causal")
        theirs = model_config(checkpoint)
        for field in ARCHITECTURE:
            if getattr(mine, field) != getattr(theirs, field):
                option = "--model.objective" if field == "causal" else f"--model.{field}"
                raise ValueError(
                    f"{option} gives {field} {getattr(mine, field)!r} but the checkpoint's model has "
                    f"{getattr(theirs, field)!r}; a checkpoint's architecture cannot change: leave {option} out "
                    "(or use the config it was trained with)"
                )

    @staticmethod
    def note_changes(model, saved: dict[str, Any]) -> None:
        """Say which of the checkpoint's training settings this run changes: they apply from here."""
        for key, value in saved.items():
            if key in model and key not in FIELDS and key != "init_from" and model[key] != value:
                print(f"resuming with {key} {model[key]!r} (the checkpoint's run had {value!r})", file=sys.stderr)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        check_tokenizer_kind(self.args if isinstance(self.args, list) else sys.argv[1:], config.data.tokenizer)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and ckpt_path not in ("hpc", "registry") and not config.data.tokenizer_from:
            # A checkpoint brings its own tokenizer: ids mean what they meant in training,
            # and predicting does not need the training corpus.
            config.data.tokenizer_from = ckpt_path
        if ckpt_path:
            # The checkpoint's weights replace any pretrained ones, which need not exist any more.
            config.model.init_from = None
        if self.subcommand == "fit":
            self.hold_run_folder(config)
        if self.subcommand != "fit":
            config.trainer.enable_checkpointing = False  # only fit writes checkpoints
            # ... so the checkpoint callback's state, which Lightning warns is not restored, is not needed.
            warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks")
        if self.subcommand != "fit":
            # Only fit makes a run: validate and test print their figures, predict its text, and
            # none of them leaves a version_N folder that `--ckpt_path last` would take for a run.
            config.trainer.logger = False
            self.save_config_callback = None
        if self.subcommand == "predict":
            config.trainer.enable_progress_bar = False  # the samples stream to stdout

    def hold_run_folder(self, config) -> None:
        """Claim this fit's version_N folder (a new run) or lock it (a resumed one): one
        process writes a run at a time. Rank 0 only: the other ranks write no logs."""
        logger = tensorboard(config)
        if logger is None or rank_zero_only.rank != 0:
            return
        experiment, version = experiment_dir(config), logger.init_args.version
        if version is None:
            logger.init_args.version = self.held.enter_context(new_run(experiment))
        else:  # resuming (or a version given): the run's own folder
            folder = version if isinstance(version, str) else f"version_{version}"
            self.held.enter_context(hold_run(experiment / folder))
            # The run's checkpoints are there on purpose: it carries on where they left off.
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The Trainer, with what every run gets besides the callbacks a config names: for
        fit the checkpoint callback (unless checkpointing is off), a clean stop on SIGINT and
        SIGTERM, a validation after the last step, and with TensorBoard the speed, the
        charts, samples and pictures; and checkpoint files written atomically and read safely."""
        trainer = self.config_init[self.subcommand]["trainer"]
        callbacks = list(trainer.get("callbacks") or [])
        if self.subcommand == "fit":
            callbacks += [self.interrupt, ValidateAtTheEnd()]
            if trainer.get("logger") not in (False, None):
                data = dict(self.config[self.subcommand].data.items())  # flat: tokenizer.kind, ...
                callbacks += [SpeedMonitor(), TensorBoardPictures(data)]
            if trainer.get("enable_checkpointing") is not False:
                callbacks.append(ModelCheckpoint(**self.config[self.subcommand]["checkpoint"].as_dict()))
        plugins = trainer.get("plugins") or []
        plugins = [*plugins] if isinstance(plugins, list) else [plugins]
        plugins.append(SafeCheckpointIO())
        return super().instantiate_trainer(**kwargs, callbacks=callbacks, plugins=plugins)

    def before_fit(self) -> None:
        apply_tokens_per_step(self.trainer, self.datamodule)  # gradient accumulation follows from it

    def after_fit(self) -> None:
        """Say where the checkpoints are and how to sample from them."""
        callback = self.trainer.checkpoint_callback
        if not self.trainer.is_global_zero or callback is None or not callback.last_model_path:
            return
        lines = []
        if callback.best_model_path:
            score = f"{callback.monitor} {float(callback.best_model_score):.4f}"
            lines.append(f"best checkpoint ({score}): {callback.best_model_path}")
        lines.append(f"last checkpoint: {callback.last_model_path}")
        command = ["python", "main.py", "predict", "--ckpt_path", callback.last_model_path]
        lines.append(f"sample from it: {shlex.join(command)} --model.sampling.max_new_tokens 500")
        print("\n".join(lines), file=sys.stderr)


def cli_main(args: list[str] | None = None, interrupt: SaveOnInterrupt | None = None) -> GPTCLI:
    with ExitStack() as held:
        return GPTCLI(
            LitGPT,
            GPTDataModule,
            auto_configure_optimizers=False,  # LitGPT.configure_optimizers owns AdamW and the schedule
            seed_everything_default=1337,
            save_config_kwargs={"overwrite": True},
            trainer_defaults=TRAINER_DEFAULTS,
            parser_kwargs={"exit_on_error": False},  # a bad argument: one error line (main), not the whole usage
            interrupt=interrupt,
            held=held,
            args=args,
        )


def log_messages_of_gpt() -> None:
    """Show the plain modules' progress messages (download, encoding, BPE training) on
    stderr, once per machine (rank 0), as Lightning shows its own."""
    logger = logging.getLogger("gpt")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.addFilter(lambda record: rank_zero_only.rank == 0)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main() -> None:
    log_messages_of_gpt()
    stop_on_signals()
    # Lightning 2.6 calls a torch API that torch 2.13 deprecates: nothing a user can act on.
    warnings.filterwarnings("ignore", message="`isinstance\\(treespec, LeafSpec\\)` is deprecated")
    # Lightning advertises its cloud logger on every run: nothing to act on.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    interrupt = SaveOnInterrupt()
    try:
        exit_on_user_error(lambda: cli_main(interrupt=interrupt), (*USER_ERRORS, MisconfigurationException))
    except argparse.ArgumentError as e:  # jsonargparse: a value of the wrong type, an unknown option
        subcommand = next((a for a in sys.argv[1:] if a in LightningCLI.subcommands()), "fit")
        print(f"error: {one_line(e)}\n(python main.py {subcommand} --help lists the options)", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:  # fit stopped by SIGINT or SIGTERM (see SaveOnInterrupt)
        if interrupt.interrupted is None:
            print("error: stopped by a signal before training began; nothing to save", file=sys.stderr)
            sys.exit(128 + (interrupt.received or 15))
        signum, step, path = interrupt.interrupted
        if interrupt.rank == 0:  # one line for the run, not one a process
            name = signal.Signals(signum).name
            print(f"{name} at step {step}: saved {path}; resume with: {resume_command(sys.argv[1:])}", file=sys.stderr)
        sys.exit(128 + signum)
    except (Interrupted, KeyboardInterrupt) as e:  # a signal outside training
        signum = e.args[0] if isinstance(e, Interrupted) else signal.SIGINT
        subcommand = next((a for a in sys.argv[1:] if a in LightningCLI.subcommands()), "")
        what = "fit stopped before training began; nothing to save" if subcommand == "fit" else f"{subcommand} stopped"
        print(f"{signal.Signals(signum).name}: {what}", file=sys.stderr)
        sys.exit(128 + signum)


if __name__ == "__main__":
    main()
