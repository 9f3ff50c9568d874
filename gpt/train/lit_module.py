"""LitGPT: the LightningModule that trains a GPT and samples from it.

The steps, the loss and metrics, the optimizer, the checkpoint hooks and predict_step. The
model (gpt/model/models.py), the optimizer and schedule (gpt/model/optim.py), sampling
(gpt/model/generation.py) and masking (gpt/model/masking.py) are plain torch; devices, precision, DDP,
accumulation, clipping, checkpointing and logging belong to Lightning's Trainer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

from gpt.data.templates import Template, template
from gpt.interop.checkpoint import check_tokenizer_fits, checkpoint_tokenizer
from gpt.model.config import GPTConfig
from gpt.model.generation import SamplingSettings
from gpt.model.lora import LoRASettings
from gpt.model.masking import IGNORE_INDEX, mask_batch
from gpt.model.models import GPT, build_model
from gpt.tokenizers import Tokenizer
from gpt.train import finetune
from gpt.train.predicting import predict_items
from gpt.train.runtime import (
    apply_settings,
    compile_forward,
    gather_from_ranks,
    optimizer_and_schedule,
    rng_state,
    set_matmul_precision,
    set_rng_state,
)

log = logging.getLogger(__name__)  # shown on rank 0 (gpt/train/cli.py)

VAL_MASK_SEED = 1234  # masked objective: which validation tokens are hidden, the same every time
FILL_CANDIDATES = 5  # masked predict: candidates shown for each <|mask|> when sampling.top_k is unset

Batch = tuple[torch.Tensor, ...]  # (x, y) windows, or (x, y, attention_mask) padded examples


def check_settings(s: dict[str, Any]) -> None:
    """Refuse training settings no run can use, naming the value."""
    if not 0 < s["mask_prob"] < 1:
        raise ValueError(f"mask_prob must be in (0, 1), got {s['mask_prob']}")
    if s["learning_rate"] <= 0:
        raise ValueError(f"learning_rate must be > 0, got {s['learning_rate']}")
    if not 0 <= s["min_lr"] <= s["learning_rate"]:
        raise ValueError(
            f"need 0 <= min_lr <= learning_rate, got min_lr={s['min_lr']}, learning_rate={s['learning_rate']}"
        )
    if s["decay_steps"] is not None and s["decay_steps"] < 1:
        raise ValueError(f"decay_steps must be >= 1 (or unset: trainer.max_steps), got {s['decay_steps']}")
    arch = s["config"].get("arch", "gpt")
    if s["objective"] == "masked" and arch not in ("gpt", None):
        raise ValueError(f"objective masked needs arch gpt (bidirectional attention), not {arch!r}")
    if s["dpo_beta"] <= 0:
        raise ValueError(f"dpo_beta must be > 0, got {s['dpo_beta']}")
    if s["lora"] is not None and s["optimizer"] == "muon":
        raise ValueError("model.optimizer muon orthogonalises whole matrices; with model.lora use adamw")


class LitGPT(L.LightningModule):
    def __init__(
        self,
        init_from: str | None = None,
        objective: Literal["causal", "masked", "dpo"] = "causal",
        mask_prob: float = 0.15,
        dpo_beta: float = 0.1,
        lora: LoRASettings | None = None,
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
            init_from: Start from these weights: a checkpoint of ours (a .ckpt, or a run folder such
                as lightning_logs/shakespeare_bpe: its newest last.ckpt; its tokenizer comes too),
                or Hugging Face GPT-2 weights (a folder, or a .safetensors file). A shorter
                block_size keeps the first positions; new special tokens start at the mean embedding.
            objective: causal: predict the next token. masked: attention both ways, and predict
                the tokens hidden by <|mask|> (BERT's recipe; needs a tokenizer with <|mask|>).
                dpo: preference tuning on chosen/rejected pairs (Rafailov et al. 2023) against
                the model as it starts, frozen (data.instructions with preference records).
            mask_prob: masked: the fraction of tokens selected for prediction; of those, 80%
                become <|mask|>, 10% a random token, 10% stay.
            dpo_beta: dpo: how far the model may move from the reference (DPO's beta).
            lora: Train low-rank adapters beside the frozen weights instead of every weight
                (Hu et al. 2021): {r: 8, alpha: 16, dropout: 0.05, targets: [attn, proj, mlp]}.
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
            compile: torch.compile the model for fit, validate and test (predict samples uncompiled).
                Fastest on a GPU; on a CPU it needs a C++ compiler. Checkpoints are the same either way.
            tf32: On CUDA, fp32 matmuls in TensorFloat-32 (10-bit mantissa, fast on tensor cores); not on a CPU.
            sampling: How predict samples (not saved with the model: each predict says its own).
            config: The model: GPTConfig's fields (gpt/model/config.py), each given here overriding
                its preset's value, e.g. preset="baby", n_layer=4.
        """
        super().__init__()
        check_settings(locals())
        # sampling: from each predict's command line; lora: kept as a plain dict (weights_only).
        self.save_hyperparameters(ignore=["sampling", "lora"])
        lora = (
            LoRASettings(**{**lora, "targets": tuple(lora.get("targets", LoRASettings.targets))})
            if isinstance(lora, dict)
            else lora
        )
        self.hparams["lora"] = asdict(lora) if lora is not None else None
        self.config = GPTConfig(**config, causal=objective != "masked")
        self.model = build_model(self.config)
        if (init_from or lora) and not isinstance(self.model, GPT):
            what = "LoRA adapts" if lora else "init_from loads"
            raise ValueError(f"{what} a GPT's weights; arch {self.config.arch!r} is a teaching model: use arch gpt")
        self.lora, self.sampling = lora, sampling
        self.masked, self.dpo = objective == "masked", objective == "dpo"
        self.reference: GPT | None = None  # dpo: the model as it started, frozen (finetune.py)
        self.template: Template | None = None  # fine-tuned: how a chat becomes a prompt
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
        if self.dpo:
            return finetune.dpo_step(self, batch, "train", log_values=self.logs_this_step())
        inputs, targets, attention_mask = self.inputs_and_targets(batch)
        logits = self.run_model(inputs, attention_mask)
        loss = self.loss(logits, targets)
        if self.logs_this_step():
            self.log("train/loss", loss, prog_bar=True)
            if attention_mask is not None:  # examples of their own length: how long they are
                self.log("train/tokens_per_example", attention_mask.sum(1).float().mean())
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
        if self.dpo:
            self.val_loss.update(finetune.dpo_step(self, batch, prefix, log_values=True), weight=batch[0].size(0) // 2)
            self.log(f"{prefix}/loss", self.val_loss, prog_bar=True)
            return
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
        return optimizer_and_schedule(self.hparams, self.model, self.trainer)

    def on_train_start(self) -> None:
        # A resumed optimizer comes back with the betas and weight decay it was saved with;
        # the settings of this run win (the learning rate is the scheduler's).
        apply_settings(self.trainer.optimizers[0], self.hparams)

    # ---- the tokenizer and checkpoints

    def setup(self, stage: str) -> None:
        set_matmul_precision(self.trainer.strategy.root_device, self.hparams.tf32)
        if self.hparams.compile and stage != "predict" and self.compiled_forward is None:
            self.compiled_forward = compile_forward(self.model, self.trainer)
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.tokenizer is None and datamodule is not None:
            self.tokenizer = getattr(datamodule, "tokenizer", None)
        self.chars_per_token = getattr(datamodule, "val_chars_per_token", None)
        self.template = getattr(datamodule, "template", None) or self.template
        if not self.restored_from_checkpoint:
            # The starting weights, adapters and reference, before a checkpoint (restored after
            # setup) brings its own. (`main.py ... --ckpt_path` drops init_from, but for the base
            # of a checkpoint that holds LoRA adapters alone.)
            finetune.prepare(self, stage)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.state_dict()
        # Every rank's random state (dropout, masking): a resumed run draws the same numbers.
        checkpoint["rng_states"] = gather_from_ranks(rng_state())
        checkpoint["best_val_loss"] = self.best_val_loss
        if self.template is not None:
            checkpoint["template"] = self.template.name
        finetune.keep_adapters_only(self, checkpoint)

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
        if checkpoint.get("template"):
            self.template = template(checkpoint["template"])

    # ---- predict

    def on_predict_start(self) -> None:
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: load it from a checkpoint or train it with a data module")
        # One generator for the whole run: every sample draws fresh numbers, and the same
        # seed with the same settings gives the same text.
        self._predict_generator = torch.Generator(device=self.device).manual_seed(self.sampling.seed)

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> list[dict[str, Any]]:
        """batch: {"index", "sample", "prompt"} items from GPTDataModule.predict_dataloader
        (gpt/train/predicting.py)."""
        return predict_items(self, batch, self._predict_generator)
