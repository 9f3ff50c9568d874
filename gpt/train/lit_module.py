"""LitGPT: the LightningModule that trains a GPT and samples from it.

The steps, the loss and metrics, the optimizer, the checkpoint hooks and predict_step. The
model (gpt/model/models.py), the optimizer and schedule (gpt/model/optim.py), sampling
(gpt/model/generation.py) and masking (gpt/model/masking.py) are plain torch; devices, precision, DDP,
accumulation, clipping, checkpointing and logging belong to Lightning's Trainer.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

from gpt.interop.checkpoint import check_tokenizer_fits, checkpoint_tokenizer
from gpt.interop.hf import load_hf
from gpt.model.config import GPTConfig
from gpt.model.generation import SEPARATOR, SamplingSettings, complete
from gpt.model.masking import IGNORE_INDEX, fill_mask, format_fill, mask_batch
from gpt.model.models import GPT, build_model
from gpt.model.optim import WarmupCosine, adamw, describe_groups, muon_adamw
from gpt.tokenizers import Tokenizer
from gpt.train.callbacks import DropoutSchedule

log = logging.getLogger(__name__)  # shown on rank 0 (gpt/train/cli.py)

VAL_MASK_SEED = 1234  # masked objective: which validation tokens are hidden, the same every time
FILL_CANDIDATES = 5  # masked predict: candidates shown for each <|mask|> when sampling.top_k is unset

Batch = tuple[torch.Tensor, ...]  # (x, y) windows, or (x, y, attention_mask) padded examples


def rng_state() -> dict[str, Any]:
    """torch's random state, on the CPU and every GPU, as a checkpoint can hold it."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def set_matmul_precision(device: torch.device, tf32: bool) -> None:
    """TF32 for fp32 matmuls on a CUDA GPU (Ampere and later run them on tensor cores); a CPU
    is left as it is."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high" if tf32 else "highest")


def compile_forward(model: torch.nn.Module, trainer: L.Trainer) -> Callable[..., torch.Tensor]:
    """torch.compile of model.forward: a function, not a submodule, so the checkpoint's weights
    keep their names and sampling calls the model uncompiled. Compiled at the first batch, after
    DDP or FSDP has wrapped the model."""
    if any(isinstance(c, DropoutSchedule) for c in trainer.callbacks):
        raise ValueError(
            "model.compile with the DropoutSchedule callback: the model would be compiled again at every step "
            "as its dropout changes; leave out one of them"
        )
    return torch.compile(model.forward)


def gather_from_ranks(value: Any) -> list[Any]:
    """value from every process, in rank order (one process: [value])."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def make_optimizer(hp: Any, model: torch.nn.Module, trainer: L.Trainer) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA and CPU), or Muon with AdamW, as hp.optimizer says.

    fp16's GradScaler unscales the gradients before they are clipped, which a fused step
    would do itself: not fused then. Without a scaler (fp32, bf16) a fused step scales nothing,
    but Lightning refuses to clip for any optimizer able to (_step_supports_amp_scaling, its
    only reader then), so the optimizer says it is not."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    make = muon_adamw if hp.get("optimizer", "adamw") == "muon" else adamw
    optimizer = make(model, hp.learning_rate, hp.weight_decay, (hp.beta1, hp.beta2), fused=False if scaler else None)
    if scaler is None:
        optimizer._step_supports_amp_scaling = False
    return optimizer


class LitGPT(L.LightningModule):
    def __init__(
        self,
        init_from: str | None = None,
        objective: Literal["causal", "masked"] = "causal",
        mask_prob: float = 0.15,
        learning_rate: float = 1e-3,
        min_lr: float = 1e-4,
        warmup_steps: int = 100,
        decay_steps: int | None = None,
        weight_decay: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.99,
        optimizer: Literal["adamw", "muon"] = "adamw",
        val_sample_tokens: int = 200,
        compile: bool = False,
        tf32: bool = True,
        sampling: SamplingSettings = SamplingSettings(),
        **config: Any,
    ):
        """
        Args:
            init_from: Start from these weights: a Hugging Face GPT-2 checkpoint (a folder with
                model.safetensors or pytorch_model.bin, or a .safetensors file). The model
                settings must fit it; a shorter block_size keeps the first positions.
            objective: causal: predict the next token. masked: attention both ways, and predict
                the tokens hidden by <|mask|> (BERT's recipe; needs a tokenizer with <|mask|>).
            mask_prob: masked: the fraction of tokens selected for prediction; of those, 80%
                become <|mask|>, 10% a random token, 10% stay.
            learning_rate: Peak learning rate, reached at the end of warmup.
            min_lr: Learning rate at the last step, after cosine decay.
            warmup_steps: Steps of linear warmup.
            decay_steps: The step at which the cosine reaches min_lr (unset: trainer.max_steps when
                the run starts). A resumed run keeps the horizon it was started with, so raising
                max_steps on resume trains on at min_lr; give decay_steps to stretch the cosine.
            weight_decay: AdamW weight decay, applied to matrices only.
            beta1: AdamW beta1.
            beta2: AdamW beta2.
            optimizer: "adamw", or "muon": Muon for the attention and MLP matrices (as the modded-nanogpt
                speedrun), AdamW for the rest; one learning rate.
            val_sample_tokens: Tokens of text generated and logged to TensorBoard at each
                validation (0 turns it off).
            compile: torch.compile the model for fit, validate and test (the first steps wait while
                it compiles; predict samples uncompiled: its inputs change shape at every token).
                Fastest on a GPU; on a CPU it needs a C++ compiler. Checkpoints are the same either way.
            tf32: On CUDA, fp32 matmuls in TensorFloat-32 (10-bit mantissa, fast on tensor cores); not on a CPU.
            sampling: How predict samples (not saved with the model: each predict says its own).
            config: The model: GPTConfig's fields (gpt/model/config.py), each given here overriding
                its preset's value, e.g. preset="baby", n_layer=4.
        """
        super().__init__()
        if not 0 < mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0 <= min_lr <= learning_rate:
            raise ValueError(f"need 0 <= min_lr <= learning_rate, got min_lr={min_lr}, learning_rate={learning_rate}")
        if decay_steps is not None and decay_steps < 1:
            raise ValueError(f"decay_steps must be >= 1 (or unset: trainer.max_steps), got {decay_steps}")
        if objective == "masked" and config.get("arch", "gpt") not in ("gpt", None):
            raise ValueError(f"objective masked needs arch gpt (bidirectional attention), not {config['arch']!r}")
        self.save_hyperparameters(ignore=["sampling"])  # sampling: from each predict's command line
        self.config = GPTConfig(**config, causal=objective == "causal")
        self.model = build_model(self.config)
        if init_from and not isinstance(self.model, GPT):
            raise ValueError(f"init_from loads GPT-2 weights, which need arch 'gpt', not {self.config.arch!r}")
        self.sampling = sampling
        self.masked = objective == "masked"
        self.restored_from_checkpoint = False  # then init_from must never overwrite the weights
        self.tokenizer: Tokenizer | None = None  # from the data module, or from the checkpoint
        self.chars_per_token: float | None = None  # of the validation text, from the data module
        self.best_val_loss = math.inf  # of this run, across resumes (it is in the checkpoint)
        self.compiled_forward: Callable[..., torch.Tensor] | None = None  # with compile (see setup)
        # A batch of one full window for Lightning's model summary, which then counts FLOPs.
        self.example_input_array = torch.zeros(1, self.config.block_size, dtype=torch.long)
        self.val_loss = MeanMetric()
        self.val_ppl = Perplexity(ignore_index=IGNORE_INDEX)
        # Bits per character: the loss in bits, spread over the characters a token stands
        # for, so that models with different tokenizers compare.
        self.val_bpc = MeanMetric()
        if self.masked:
            # Accuracy on the masked positions: how often the top guess is the hidden token.
            accuracy = dict(num_classes=self.config.vocab_size, ignore_index=IGNORE_INDEX, average="micro")
            self.train_acc, self.val_acc = MulticlassAccuracy(**accuracy), MulticlassAccuracy(**accuracy)

    # ---- training and evaluation

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(idx, attention_mask=attention_mask)

    def run_model(self, idx: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The steps' forward: compiled with compile. forward (the model summary's) stays eager."""
        return (self.compiled_forward or self.model)(idx, attention_mask=attention_mask)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    def inputs_and_targets(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """(inputs, targets, attention_mask) of a batch: for the masked objective, x with
        tokens hidden and the hidden ones as targets."""
        x, y, attention_mask = batch if len(batch) == 3 else (*batch, None)
        if self.masked:
            x, y = mask_batch(x, self.tokenizer, self.hparams.mask_prob, attention_mask, generator)
        return x, y, attention_mask

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        inputs, targets, attention_mask = self.inputs_and_targets(batch)
        logits = self.run_model(inputs, attention_mask)
        loss = self.loss(logits, targets)
        if self.logs_this_step():
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])  # every group has the same rate
            if self.masked:
                self.train_acc(logits.detach().flatten(0, 1), targets.flatten())
                self.log("train/acc", self.train_acc)
        return loss

    def logs_this_step(self) -> bool:
        """Whether the logger writes this step (every log_every_n_steps): self.log costs about a
        millisecond, several percent of a step of a small model on a CPU."""
        return (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Before clipping (Lightning clips after this hook): the norm clipping acts on. Spikes
        # here come before spikes in the loss.
        if self.logs_this_step():
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))

    def on_validation_epoch_start(self) -> None:
        # The same tokens hidden at every validation, in every run with this seed: val
        # numbers compare between runs and steps.
        self._val_generator = torch.Generator(device=self.device).manual_seed(VAL_MASK_SEED)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def evaluate(self, batch: Batch, prefix: str) -> None:
        inputs, y, attention_mask = self.inputs_and_targets(batch, self._val_generator if self.masked else None)
        logits = self.run_model(inputs, attention_mask).float()
        # Weight each batch's mean by its scored targets: the epoch value is the exact
        # per-token loss of the whole split.
        loss, n_scored = self.loss(logits, y), (y != IGNORE_INDEX).sum()
        self.val_loss.update(loss, weight=n_scored)
        self.val_ppl.update(logits, y)
        self.log(f"{prefix}/loss", self.val_loss, prog_bar=True)
        self.log(f"{prefix}/ppl", self.val_ppl)
        if self.masked:
            self.val_acc.update(logits.flatten(0, 1), y.flatten())
            self.log(f"{prefix}/acc", self.val_acc, prog_bar=True)
        elif self.chars_per_token:
            self.val_bpc.update(loss / math.log(2) / self.chars_per_token, weight=n_scored)
            self.log(f"{prefix}/bpc", self.val_bpc)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        # The lowest validation loss of the run so far, for HPARAMS' table (val/loss is the last).
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.best_val_loss = min(self.best_val_loss, float(self.val_loss.compute()))
            self.log("val/best_loss", self.best_val_loss)

    # ---- optimisation

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = make_optimizer(hp, self.model, self.trainer)
        log.info(f"{type(optimizer).__name__}: {describe_groups(optimizer.param_groups)}")
        if hp.decay_steps is None:  # this run's horizon, saved with it: a resumed run keeps it
            hp.decay_steps = int(self.trainer.estimated_stepping_batches)  # max_steps, or epochs x batches
        scheduler = WarmupCosine(optimizer, hp.learning_rate, hp.min_lr, hp.warmup_steps, hp.decay_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        # A resumed optimizer comes back with the betas and weight decay it was saved with;
        # the settings of this run win (the learning rate is the scheduler's).
        hp = self.hparams
        for group in self.trainer.optimizers[0].param_groups:
            group["betas"] = (hp.beta1, hp.beta2)
            group["weight_decay"] = hp.weight_decay if group.get("name") in ("decay", "muon") else 0.0

    # ---- the tokenizer and checkpoints

    def setup(self, stage: str) -> None:
        set_matmul_precision(self.trainer.strategy.root_device, self.hparams.tf32)
        if self.hparams.compile and stage != "predict" and self.compiled_forward is None:
            self.compiled_forward = compile_forward(self.model, self.trainer)
        if self.hparams.init_from and not self.restored_from_checkpoint:
            # Pretrained weights to start from. (`main.py ... --ckpt_path` drops init_from: the
            # checkpoint restored after setup brings its own weights.)
            load_hf(self.model, self.hparams.init_from)
            log.info(f"loaded Hugging Face GPT-2 weights from {self.hparams.init_from}")
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.tokenizer is None and datamodule is not None:
            self.tokenizer = getattr(datamodule, "tokenizer", None)
        self.chars_per_token = getattr(datamodule, "val_chars_per_token", None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.state_dict()
        # Every rank's random state (dropout, masking): a resumed run draws the same numbers.
        checkpoint["rng_states"] = gather_from_ranks(rng_state())
        checkpoint["best_val_loss"] = self.best_val_loss

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restored_from_checkpoint = True
        self.best_val_loss = checkpoint.get("best_val_loss", math.inf)
        states = checkpoint.get("rng_states")
        if states and self._trainer is not None and self.trainer.state.fn == "fit":
            set_rng_state(states[self.trainer.global_rank % len(states)])
        saved = checkpoint.get("hyper_parameters", {})
        if self.hparams.get("decay_steps") is None and saved.get("decay_steps") is not None:
            self.hparams.decay_steps = saved["decay_steps"]  # the schedule's horizon of the run resumed
        # Against the model's size as saved, then as built here (which may follow the data
        # module's tokenizer, and would agree with it even when the weights do not).
        tokenizer = checkpoint_tokenizer(checkpoint)
        if tokenizer is not None:
            check_tokenizer_fits(tokenizer, self.config.vocab_size)
            self.tokenizer = tokenizer

    # ---- predict

    def on_predict_start(self) -> None:
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: load it from a checkpoint or train it with a data module")
        # One generator for the whole run: every sample draws fresh numbers, and the same
        # seed with the same settings gives the same text.
        self._predict_generator = torch.Generator(device=self.device).manual_seed(self.sampling.seed)

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> list[dict[str, Any]]:
        """batch: {"index", "sample", "prompt"} items from GPTDataModule.predict_dataloader.
        Prints each sample (as it is written, with sampling.stream) and returns one record
        each, for a prediction writer. A masked model fills the prompt's <|mask|> tokens."""
        if self.masked:
            k = self.sampling.top_k or FILL_CANDIDATES
            results = [fill_mask(self.model, self.tokenizer, item["prompt"], k) for item in batch]
            for result in results:
                print(format_fill(result) + SEPARATOR, flush=True)
            return [item | result for item, result in zip(batch, results)]
        prompts = [item["prompt"] for item in batch]
        results = complete(self.model, self.tokenizer, prompts, self.sampling, self._predict_generator, sys.stdout)
        settings = asdict(self.sampling)
        return [
            item | {"completion": r.text, "finish": r.finish, "settings": settings} for item, r in zip(batch, results)
        ]
