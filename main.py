"""Train, evaluate and sample GPTs from the command line.

    python main.py fit --config configs/shakespeare_char_cpu.yaml
    python main.py fit --config configs/shakespeare_char_cpu.yaml --ckpt_path last   # resume
    python main.py predict --config configs/shakespeare_char_cpu.yaml --ckpt_path last --data.prompt "ROMEO:"
    python main.py fit --help

LightningCLI builds the CLI and the YAML configs from the typed __init__ arguments of
LitGPT (model.*, with GPTConfig's fields among them), GPTDataModule (data.*), Lightning's
Trainer (trainer.*) and the checkpoint callback (checkpoint.*). The defaults below are
what every experiment shares; a config says only what differs. This file only wires: what
the hooks do lives in gpt/train/ (cli.py, resume.py, runs.py).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from gpt.interop.checkpoint import load_checkpoint
from gpt.interop.init import is_checkpoint
from gpt.train import arguments, cli, resume
from gpt.train.checkpointing import SaveOnInterrupt
from gpt.train.datamodule import GPTDataModule
from gpt.train.lit_module import LitGPT
from gpt.train.runs import experiment_dir, hold_run_folder, place_run, run_of, tensorboard_section, unpin_run_folder
from gpt.train.runtime import apply_tokens_per_step

TRAINER_DEFAULTS = {
    # TensorBoard under lightning_logs/<the config's name>/version_N (see gpt/train/runs.py).
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

CHECKPOINT_DEFAULTS = {  # the best validation loss; and last.ckpt, the latest state (LatestCheckpoint)
    "monitor": "val/loss",
    "filename": "step{step}-val{val/loss:.3f}",
    "auto_insert_metric_name": False,
    "save_last": True,  # last.ckpt at every validation and at the end, whatever val/loss did
    "train_time_interval": timedelta(minutes=30),  # ... and after at most this much training
}


class GPTCLI(LightningCLI):
    checkpoint_path: Path | None = None  # what --ckpt_path names (gpt/train/resume.py)
    checkpoint: dict[str, Any] | None = None  # ... read once, checked

    def __init__(self, *args: Any, interrupt: SaveOnInterrupt | None = None, **kwargs: Any):
        self.interrupt = interrupt or SaveOnInterrupt()
        self.held = ExitStack()  # the run folder's lock, released when the command ends
        with self.held:
            super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # No --weights_only: checkpoints are only ever read as tensors and plain values.
        return {name: skip | {"weights_only"} for name, skip in LightningCLI.subcommands().items()}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The checkpoint callback every fit gets, configurable as checkpoint.* (see instantiate_trainer).
        parser.add_class_arguments(ModelCheckpoint, "checkpoint", instantiate=False)
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        # Typed once, in the model (or taken from its preset); the data cuts windows of that length.
        parser.link_arguments(("model.preset", "model.block_size"), "data.block_size", compute_fn=cli.model_block_size)
        # The data serves the objective: a masked model needs <|mask|> in the tokenizer.
        parser.link_arguments("model.objective", "data.objective")
        # GRPO's updates on one batch of rollouts: the data gives each batch that many times.
        parser.link_arguments("model.grpo.updates", "data.repeats")
        # Follows from the data (the tokenizer), so it is computed, never typed.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse; with --ckpt_path, find the checkpoint and parse again with its model settings
        beneath the user's (gpt/train/resume.py)."""
        if args is None:
            sys.argv[1:] = cli.renamed_flags(sys.argv[1:])  # in place: DDP relaunches this very command
            args = sys.argv[1:]
        elif isinstance(args, list):
            args = cli.renamed_flags(args)
        else:  # a dict or Namespace of settings, from Python
            return super().parse_arguments(parser, args)
        self.args = args
        self.config = arguments.parse(parser, args)  # a mistyped key: its file and the closest key named
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand]
        place_run(config)
        self.checkpoint_path = resume.resolve_ckpt_path(subcommand, config)
        self.checkpoint = None
        if self.checkpoint_path is not None:
            self.checkpoint = load_checkpoint(self.checkpoint_path)
            settings = resume.saved_settings(self.checkpoint)
            self.config = parser.parse_args(resume.with_settings(args, subcommand, settings))
            config = self.config[subcommand]
            place_run(config)
            resume.check_architecture(config.model, self.checkpoint)
        elif (start := cli.starting_point(config.model.init_from)) and is_checkpoint(start):
            # A new run from a checkpoint of ours has its shape, beneath what the user says.
            shape = resume.shape_of(load_checkpoint(start))
            self.config = parser.parse_args(resume.with_settings(args, subcommand, shape))
            config = self.config[subcommand]
            place_run(config)
            config.model.init_from = start
        # Lightning 2.6 reads a --ckpt_path file's hyperparameters over the command line's right
        # after this hook (LightningCLI._parse_ckpt_path, not public); it gets no path to read, and
        # before_instantiate_classes sets the resolved one back. Tested in tests/test_layout.py.
        if config.ckpt_path not in resume.LIGHTNINGS:
            config.ckpt_path = None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        path = str(self.checkpoint_path) if self.checkpoint_path else None
        config.ckpt_path = path or config.ckpt_path
        cli.check_tokenizer_kind(getattr(self, "args", []), config.data.tokenizer)
        cli.settings_of_subcommand(self.subcommand, config, path, self.checkpoint)
        cli.lightning_habits(config.trainer)
        if self.subcommand != "fit":
            self.save_config_callback = None
            return
        if self.checkpoint is not None:
            resume.note_changes(config.model, self.checkpoint, config.trainer.max_steps)
            version, logger = run_of(self.checkpoint_path, experiment_dir(config)), tensorboard_section(config)
            if version is not None and logger is not None:
                # Carry on in the run's own folder, one curve in TensorBoard; what the run logged
                # after this checkpoint (if it was killed later) is hidden: it is trained again.
                logger.init_args.version = version
                logger.init_args.purge_step = self.checkpoint.get("global_step")
        if rank_zero_only.rank == 0:  # the other ranks write no logs
            hold_run_folder(config, self.held, trained=self.trained)

    def trained(self) -> bool:
        """Whether this fit trained a step: a new run that fails before (its data, its starting
        weights) leaves no run folder."""
        return getattr(self, "trainer", None) is not None and self.trainer.global_step > 0

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with what every run gets besides the callbacks a config names
        (gpt/train/cli.py run_callbacks), and checkpoint files written atomically and read safely."""
        trainer = self.config_init[self.subcommand]["trainer"]
        callbacks, io = cli.run_callbacks(self.subcommand, trainer, self.config[self.subcommand], self.interrupt)
        plugins = trainer.get("plugins") or []
        plugins = [*plugins, io] if isinstance(plugins, list) else [plugins, io]
        return super().instantiate_trainer(**kwargs, callbacks=callbacks, plugins=plugins)

    def after_instantiate_classes(self) -> None:
        unpin_run_folder(self.config[self.subcommand])  # what config.yaml says: no version_N

    def before_fit(self) -> None:
        apply_tokens_per_step(self.trainer, self.datamodule)  # gradient accumulation follows from it

    def after_fit(self) -> None:
        cli.describe_fit_end(self.trainer)


CLI_SETTINGS = dict(
    auto_configure_optimizers=False,  # LitGPT.configure_optimizers owns AdamW and the schedule
    seed_everything_default=1337,
    save_config_kwargs={"overwrite": True},
    trainer_defaults=TRAINER_DEFAULTS,
    # A bad argument: one error line (gpt/train/cli.py), not the usage; a mistyped option that
    # begins a real one (--trainer.max_step) is refused, not taken for it.
    parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
)


def cli_main(args: list[str] | None = None, interrupt: SaveOnInterrupt | None = None) -> GPTCLI:
    return GPTCLI(LitGPT, GPTDataModule, **CLI_SETTINGS, interrupt=interrupt, args=args)


def main() -> None:
    cli.run(lambda interrupt: cli_main(interrupt=interrupt))


if __name__ == "__main__":
    main()
