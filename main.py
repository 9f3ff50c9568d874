"""Train, evaluate and sample GPTs from the command line.

    python main.py fit --config configs/shakespeare_char_cpu.yaml
    python main.py predict --ckpt_path PATH --data.prompt "ROMEO:"
    python main.py fit --help

LightningCLI builds the CLI and the YAML configs from the typed __init__ arguments of
LitGPT (model.*, with GPTConfig's fields among them), GPTDataModule (data.*), Lightning's
Trainer (trainer.*) and the checkpoint callback (checkpoint.*). The defaults below are
what every experiment shares; a config says only what differs.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

from lightning import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from gpt.callbacks import TokenThroughputMonitor
from gpt.checkpoint import check_checkpoint
from gpt.config import GPT2_SMALL, PRESETS
from gpt.datamodule import GPTDataModule
from gpt.generation import SamplingSettings
from gpt.lit_module import LitGPT

# Values Lightning resolves itself rather than reading a file.
SPECIAL_CKPT_PATHS = {"last", "best", "hpc", "registry"}

TRAINER_DEFAULTS = {
    # TensorBoard under lightning_logs/<the config's name>/version_N (see GPTCLI.run_name).
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
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


def model_block_size(preset: str | None, block_size: int | None) -> int:
    """The model's block_size: as given, else its preset's (an unknown preset is refused, with
    the known ones listed, when the model is built)."""
    if block_size is not None:
        return block_size
    return PRESETS.get(preset or "gpt2", {}).get("block_size", GPT2_SMALL["block_size"])


class GPTCLI(LightningCLI):
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
        super().parse_arguments(parser, args)
        # Lightning reads --ckpt_path's hyperparameters right after parsing; a wrong file
        # would fail there with a message about torch.load's weights_only.
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in SPECIAL_CKPT_PATHS:
            check_checkpoint(ckpt_path)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and ckpt_path not in SPECIAL_CKPT_PATHS and not config.data.tokenizer_from:
            # A checkpoint brings its own tokenizer: ids mean what they meant in training,
            # and predicting does not need the training corpus.
            config.data.tokenizer_from = ckpt_path
        if ckpt_path:
            # The checkpoint's weights replace any pretrained ones, which need not exist any more.
            config.model.init_from = None
        logger = config.trainer.logger
        if getattr(logger, "class_path", "").endswith("TensorBoardLogger") and not logger.init_args.name:
            logger.init_args.name = self.run_name(config)
        if self.subcommand != "fit":
            config.trainer.enable_checkpointing = False  # only fit writes checkpoints
        if self.subcommand == "predict":
            # Predicting logs nothing: leave no empty run folder behind. The samples stream
            # to stdout, so no progress bar there either.
            config.trainer.logger = False
            config.trainer.enable_progress_bar = False
            self.save_config_callback = None

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The Trainer, with what every run gets besides the callbacks a config names: the
        learning rate and tokens/s in TensorBoard (when there is a logger), and for fit the
        checkpoint callback (unless checkpointing is off)."""
        trainer = self.config_init[self.subcommand]["trainer"]
        callbacks = list(trainer.get("callbacks") or [])
        if trainer.get("logger") not in (False, None):
            callbacks += [LearningRateMonitor(logging_interval="step"), TokenThroughputMonitor()]
        if self.subcommand == "fit" and trainer.get("enable_checkpointing") is not False:
            callbacks.append(ModelCheckpoint(**self.config[self.subcommand]["checkpoint"].as_dict()))
        return super().instantiate_trainer(**kwargs, callbacks=callbacks)

    @staticmethod
    def run_name(config) -> str:
        """The run folder's name: runs of configs/X.yaml go to lightning_logs/X/version_N (of
        configs/teaching/X.yaml to lightning_logs/teaching_X/), runs without a config to
        lightning_logs/version_N."""
        files = config.get("config") or []
        if not files:
            return ""
        path = Path(str(files[-1])).resolve().with_suffix("")
        parts = path.parts[path.parts.index("configs") + 1 :] if "configs" in path.parts else (path.name,)
        return "_".join(parts)


def cli_main(args: list[str] | None = None) -> GPTCLI:
    return GPTCLI(
        LitGPT,
        GPTDataModule,
        auto_configure_optimizers=False,  # LitGPT.configure_optimizers owns AdamW and the schedule
        seed_everything_default=1337,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        args=args,
    )


def log_messages_of_gpt() -> None:
    """Show the plain modules' progress messages (download, encoding, BPE training) on
    stderr, once per machine (rank 0), as Lightning shows its own."""
    handler = logging.StreamHandler()
    handler.addFilter(lambda record: rank_zero_only.rank == 0)
    logging.getLogger("gpt").addHandler(handler)
    logging.getLogger("gpt").setLevel(logging.INFO)


def main() -> None:
    log_messages_of_gpt()
    try:
        cli_main()
    except (ValueError, FileNotFoundError) as e:
        # Errors a user can cause: say what was wrong in one message, not a traceback.
        if os.environ.get("GPT_TRACEBACK"):
            raise
        print(f"error: {e}\n(set GPT_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
