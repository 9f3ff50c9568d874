"""Train, evaluate and sample GPTs from the command line.

    python main.py fit --config configs/shakespeare_char_cpu.yaml
    python main.py predict --config configs/shakespeare_char_cpu.yaml --ckpt_path PATH
    python main.py fit --help

LightningCLI builds the CLI and the YAML configs from the typed __init__ arguments of
LitGPT (model.*), GPTDataModule (data.*) and Lightning's Trainer (trainer.*).
"""

from __future__ import annotations

import os
import sys

from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from gpt.callbacks import TokenThroughputMonitor
from gpt.config import PRESETS, GPTConfig
from gpt.datamodule import GPTDataModule, check_checkpoint
from gpt.lit_module import LitGPT

# Values Lightning resolves itself rather than reading a file.
_SPECIAL_CKPT_PATHS = {"last", "best", "hpc", "registry"}


def model_block_size(preset: str | None, block_size: int | None) -> int:
    """The model's block_size: as given, else its preset's (an unknown preset is refused, with
    the known ones listed, when the model is built)."""
    if block_size is not None:
        return block_size
    return PRESETS.get(preset, GPTConfig()).block_size


class GPTCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        # Lightning reads --ckpt_path's hyperparameters right after parsing; a wrong file
        # would fail there with a message about torch.load's weights_only.
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in _SPECIAL_CKPT_PATHS:
            check_checkpoint(ckpt_path)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Typed once, in the model (or taken from its preset); the data cuts windows of the
        # same length.
        parser.link_arguments(("model.preset", "model.block_size"), "data.block_size", compute_fn=model_block_size)
        # The data serves the objective: a masked model needs <|mask|> in the tokenizer.
        parser.link_arguments("model.objective", "data.objective")
        # Follows from the data (the tokenizer), so it is computed, never typed.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and ckpt_path not in _SPECIAL_CKPT_PATHS and not config.data.tokenizer_from:
            # A checkpoint brings its own tokenizer: ids mean what they meant in training,
            # and predicting does not need the training corpus.
            config.data.tokenizer_from = ckpt_path
        if ckpt_path:
            # The checkpoint's weights replace any pretrained ones, which need not exist any more.
            config.model.init_from = None
        if self.subcommand == "predict":
            # Predicting logs nothing: leave no empty run folder behind. The samples stream
            # to stdout, so no progress bar there either.
            config.trainer.logger = False
            config.trainer.enable_progress_bar = False
            self.save_config_callback = None


def cli_main(args: list[str] | None = None) -> GPTCLI:
    return GPTCLI(
        LitGPT,
        GPTDataModule,
        auto_configure_optimizers=False,  # LitGPT.configure_optimizers owns AdamW and the schedule
        save_config_kwargs={"overwrite": True},
        # Always on: the learning rate and tokens/s in TensorBoard.
        trainer_defaults={"callbacks": [LearningRateMonitor(logging_interval="step"), TokenThroughputMonitor()]},
        args=args,
    )


def main() -> None:
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
