"""LitGPT: the LightningModule that trains a GPT and samples from it.

Loss, metrics, AdamW parameter groups, warmup + cosine learning rate, generation in
predict_step, and the tokenizer saved inside every checkpoint. Devices, precision, DDP,
accumulation, clipping, checkpointing and logging belong to Lightning's Trainer.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Literal, Optional

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

from gpt.config import Arch, Mlp, Norm, Pos
from gpt.config import preset as gpt_preset
from gpt.masking import IGNORE_INDEX, mask_tokens
from gpt.generation import Completion, SamplingSettings, complete, start_ids
from gpt.hf import load_hf
from gpt.model import GPT, build_model
from gpt.tokenizers import MASK, PAD, Tokenizer, tokenizer_from_state

# Settings that only steer sampling: kept out of the checkpoint's hyperparameters so that
# `predict --ckpt_path` takes them from the command line, not from training time.
SAMPLING_ARGS = ("max_new_tokens", "temperature", "top_k", "top_p", "stop", "stop_at_eot", "sample_seed", "stream", "kv_cache")


VAL_MASK_SEED = 1234  # masked objective: which validation tokens are hidden, the same every time


def print_piece(row: int, text: str) -> None:
    print(text, end="", flush=True)


def cosine_lr(step: int, learning_rate: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_lr at decay_steps (nanoGPT)."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay every matrix (Linear weights, embeddings); never biases or norm gains.

    Shrinking a bias or a LayerNorm gain towards zero is not regularisation, it only
    fights the optimiser. Tied weights appear once (named_parameters skips duplicates).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


class LitGPT(L.LightningModule):
    def __init__(
        self,
        preset: Optional[str] = None,
        arch: Optional[Arch] = None,
        vocab_size: Optional[int] = None,
        block_size: Optional[int] = None,
        n_layer: Optional[int] = None,
        n_head: Optional[int] = None,
        n_embd: Optional[int] = None,
        dropout: Optional[float] = None,
        pos: Optional[Pos] = None,
        mlp: Optional[Mlp] = None,
        norm: Optional[Norm] = None,
        bias: Optional[bool] = None,
        qkv_bias: Optional[bool] = None,
        tie_weights: Optional[bool] = None,
        rope_base: Optional[float] = None,
        init_from: Optional[str] = None,
        objective: Literal["causal", "masked"] = "causal",
        mask_prob: float = 0.15,
        learning_rate: float = 1e-3,
        min_lr: float = 1e-4,
        warmup_steps: int = 100,
        weight_decay: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.99,
        val_sample_tokens: int = 200,
        max_new_tokens: int = 500,
        temperature: float = 0.8,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        stop: Optional[list[str]] = None,
        stop_at_eot: bool = True,
        sample_seed: int = 1337,
        stream: bool = True,
        kv_cache: bool = True,
    ):
        """
        The model settings (preset to rope_base) are GPTConfig's (gpt/config.py); any left
        unset come from the preset, or without one from GPTConfig's defaults (GPT-2 small).

        Args:
            preset: Named model size and choices: gpt2, gpt2-medium, gpt2-large, gpt2-xl, baby.
            arch: Which model: bigram, head, multi_head, blocks (the teaching sequence) or gpt.
            vocab_size: Size of the vocabulary (linked from the data's tokenizer).
            block_size: Longest context the model sees, in tokens.
            n_layer: Transformer blocks.
            n_head: Attention heads per block.
            n_embd: Width of the residual stream.
            dropout: Dropout probability in attention, MLP and embeddings.
            pos: Positions: learned embeddings (GPT-2) or rope (rotary, LLaMA).
            mlp: MLP: gelu (GPT-2), relu, or swiglu (LLaMA).
            norm: layernorm (GPT-2) or rmsnorm (LLaMA).
            bias: Biases in Linear layers and LayerNorms.
            qkv_bias: Bias on the query/key/value projection (unset: same as bias).
            tie_weights: The LM head reuses the token embedding matrix.
            rope_base: RoPE's theta.
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
            weight_decay: AdamW weight decay, applied to matrices only.
            beta1: AdamW beta1.
            beta2: AdamW beta2.
            val_sample_tokens: Tokens of text generated and logged to TensorBoard at each
                validation (0 turns it off).
            max_new_tokens: predict: tokens to generate.
            temperature: predict: sampling temperature; 0 picks the most likely token.
            top_k: predict: sample from the k most likely tokens only (None: all).
            top_p: predict: sample from the fewest most likely tokens whose probabilities
                add up to top_p (nucleus sampling; None: all).
            stop: predict: strings that end a sample (the sample stops before them).
            stop_at_eot: predict: end a sample at the tokenizer's <|endoftext|> token.
            sample_seed: predict: seed of the sampler; the same seed and settings give the
                same text.
            stream: predict: print each sample as it is written, one at a time; off, samples
                of prompts with one token length are drawn as one batch and printed after.
            kv_cache: predict: keep past keys and values instead of recomputing the context
                at every token (GPT only; the teaching models always recompute).
        """
        super().__init__()
        self.sampling = SamplingSettings(max_new_tokens, temperature, top_k, top_p, tuple(stop or ()), stop_at_eot, kv_cache)
        if not 0 < mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        if objective == "masked" and (arch or "gpt") != "gpt":
            raise ValueError(f"objective masked needs arch gpt (bidirectional attention), not {arch!r}")
        if not 0 <= min_lr <= learning_rate:
            raise ValueError(f"need 0 <= min_lr <= learning_rate, got min_lr={min_lr}, learning_rate={learning_rate}")
        self.save_hyperparameters(ignore=list(SAMPLING_ARGS))
        self.config = gpt_preset(
            preset, arch=arch, vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
            n_embd=n_embd, dropout=dropout, pos=pos, mlp=mlp, norm=norm, bias=bias, qkv_bias=qkv_bias,
            tie_weights=tie_weights, rope_base=rope_base, causal=objective == "causal",
        )  # fmt: skip
        self.model = build_model(self.config)
        if init_from and not isinstance(self.model, GPT):
            raise ValueError(f"init_from loads GPT-2 weights, which need arch 'gpt', not {self.config.arch!r}")
        self.init_from = init_from
        self.restored_from_checkpoint = False  # LitGPT.load_from_checkpoint: never overwrite with init_from
        self.sample_seed, self.stream = sample_seed, stream
        self.tokenizer: Optional[Tokenizer] = None  # from the data module, or from the checkpoint
        self.val_loss = MeanMetric()
        self.val_ppl = Perplexity(ignore_index=IGNORE_INDEX)
        # Bits per character: the loss in bits, spread over the characters a token stands
        # for, so that models with different tokenizers compare.
        self.val_bpc = MeanMetric()
        self.chars_per_token: Optional[float] = None  # of the validation text, from the data module
        self.masked = objective == "masked"
        if self.masked:
            # Accuracy on the masked positions: how often the top guess is the hidden token.
            accuracy = dict(num_classes=self.config.vocab_size, ignore_index=IGNORE_INDEX, average="micro")
            self.train_acc, self.val_acc = MulticlassAccuracy(**accuracy), MulticlassAccuracy(**accuracy)

    # ---- training and evaluation

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    def inputs_and_targets(
        self, batch: tuple[torch.Tensor, ...], generator: Optional[torch.Generator] = None
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """(inputs, targets, real) of a (x, y) or (x, y, real) batch: for the masked
        objective, x with tokens hidden and the hidden ones as targets."""
        x, y, real = batch if len(batch) == 3 else (*batch, None)
        if not self.masked:
            return x, y, real
        special = self.tokenizer.special_tokens
        n_ordinary = min(special.values())  # special tokens come after the ordinary ones
        inputs, targets = mask_tokens(x, special[MASK], n_ordinary, self.hparams.mask_prob, real, generator)
        return inputs, targets, real

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        inputs, targets, real = self.inputs_and_targets(batch)
        logits = self.model(inputs, real=real)
        loss = self.loss(logits, targets)
        # self.log costs about a millisecond, several percent of a step of a small model on a
        # CPU: call it only on the steps the logger writes (every log_every_n_steps).
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss", loss, prog_bar=True)
            if self.masked:
                self.train_acc(logits.detach().flatten(0, 1), targets.flatten())
                self.log("train/acc", self.train_acc)
        return loss

    def on_validation_epoch_start(self) -> None:
        # The same tokens hidden at every validation, in every run with this seed: val
        # numbers compare between runs and steps.
        self._val_generator = torch.Generator(device=self.device).manual_seed(VAL_MASK_SEED)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def _evaluate(self, batch: tuple[torch.Tensor, ...], prefix: str) -> None:
        inputs, y, real = self.inputs_and_targets(batch, self._val_generator if self.masked else None)
        logits = self.model(inputs, real=real).float()
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

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # ---- optimisation

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = param_groups(self.model, hp.weight_decay)
        n_decay, n_no_decay = (sum(p.numel() for p in g["params"]) for g in groups)
        rank_zero_info(
            f"AdamW: {len(groups[0]['params'])} tensors, {n_decay:,} parameters with weight decay {hp.weight_decay}; "
            f"{len(groups[1]['params'])} tensors, {n_no_decay:,} parameters without"
        )
        optimizer = torch.optim.AdamW(
            groups, lr=hp.learning_rate, betas=(hp.beta1, hp.beta2), fused=self.device.type == "cuda"
        )
        decay_steps = self.trainer.estimated_stepping_batches  # max_steps, or epochs x batches

        def lr_factor(step: int) -> float:
            return cosine_lr(step, hp.learning_rate, hp.min_lr, hp.warmup_steps, decay_steps) / hp.learning_rate

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- tokenizer and checkpoints

    def setup(self, stage: str) -> None:
        if self.init_from and not self.restored_from_checkpoint:
            # Pretrained weights to start from. (`main.py ... --ckpt_path` drops init_from: the
            # checkpoint restored after setup brings its own weights.)
            load_hf(self.model, self.init_from)
            rank_zero_info(f"loaded Hugging Face GPT-2 weights from {self.init_from}")
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.tokenizer is None and datamodule is not None:
            self.tokenizer = getattr(datamodule, "tokenizer", None)
        self.chars_per_token = getattr(datamodule, "val_chars_per_token", None)
        if datamodule is not None and hasattr(datamodule, "batch_size"):
            # Read by ThroughputMonitor to report model FLOP utilisation.
            T = self.config.block_size
            self.flops_per_batch = self.model.flops_per_token(T) * T * datamodule.batch_size

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restored_from_checkpoint = True
        if "tokenizer" not in checkpoint:
            return
        tokenizer = tokenizer_from_state(checkpoint["tokenizer"])
        # The model's size as saved (self.config may already follow the tokenizer, linked
        # from the data module, and would then agree with it even when the weights do not).
        vocab_size = checkpoint.get("hyper_parameters", {}).get("vocab_size", self.config.vocab_size)
        for size in (vocab_size, self.config.vocab_size):
            if tokenizer.vocab_size != size:
                raise ValueError(
                    f"the checkpoint's tokenizer has {tokenizer.vocab_size} tokens but its model has vocab_size "
                    f"{size}; the checkpoint is inconsistent: use the tokenizer the model was trained with"
                )
        self.tokenizer = tokenizer

    # ---- sampling

    def complete(
        self,
        prompts: list[Optional[str]],
        settings: Optional[SamplingSettings] = None,
        generator: Optional[torch.Generator] = None,
        stream: bool = False,
    ) -> list[Completion]:
        """Continue each prompt (None: no prompt), results in input order. Prompts of one
        token length sample as one batch; with stream, one at a time, each printed to stdout
        as it is written."""
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: load it from a checkpoint or train it with a data module")
        settings = settings or self.sampling
        lengths = [len(start_ids(self.tokenizer, p)[0]) for p in prompts]  # checks every prompt first
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(i if stream else n, []).append(i)
        out: list[Optional[Completion]] = [None] * len(prompts)
        for rows in groups.values():
            batch = [prompts[i] for i in rows]
            if stream:  # one prompt: print it, then its text piece by piece
                print(start_ids(self.tokenizer, batch[0])[1], end="", flush=True)
                results = complete(self.model, self.tokenizer, batch, settings, generator, on_text=print_piece)
                print("\n" + "-" * 40, flush=True)
            else:
                results = complete(self.model, self.tokenizer, batch, settings, generator)
            for i, result in zip(rows, results):
                out[i] = result
        return out

    def on_predict_start(self) -> None:
        # One generator for the whole run: every sample draws fresh numbers, and the same
        # seed with the same settings gives the same text.
        self._predict_generator = torch.Generator(device=self.device).manual_seed(self.sample_seed)

    def fill_masks(self, prompt: Optional[str], k: int) -> dict[str, Any]:
        """A masked model's predictions for each <|mask|> of the prompt: the prompt with each
        filled by its most likely token, and the k best candidates with probabilities."""
        if prompt is None or MASK not in prompt:
            raise ValueError(f"the prompt has no {MASK} to fill; write {MASK} where a token is to be predicted")
        mask_id = self.tokenizer.special_tokens[MASK]
        ids = torch.tensor([self.tokenizer.encode(prompt, allowed_special={MASK})], device=self.device)
        if ids.size(1) > self.config.block_size:
            raise ValueError(f"the prompt has {ids.size(1)} tokens; the model reads at most {self.config.block_size}")
        with torch.no_grad():
            logits = self.model(ids)[0].float()
        # <|pad|> and <|mask|> are never a hidden token: leave them out of the candidates.
        never = [i for token, i in self.tokenizer.special_tokens.items() if token in (PAD, MASK)]
        probs = torch.softmax(logits.index_fill(-1, torch.tensor(never, device=self.device), float("-inf")), dim=-1)
        filled, candidates = ids[0].tolist(), []
        for position in (ids[0] == mask_id).nonzero().flatten().tolist():
            top = torch.topk(probs[position], min(k, probs.size(-1)))
            filled[position] = top.indices[0].item()
            candidates.append([[self.tokenizer.decode([i]), round(p, 4)] for p, i in zip(top.values.tolist(), top.indices.tolist())])
        return {"completion": self.tokenizer.decode(filled), "candidates": candidates}

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> list[dict[str, Any]]:
        """batch: {"index", "sample", "prompt"} items from GPTDataModule.predict_dataloader.
        Prints each sample (as it is written, with stream) and returns one record each, for
        a prediction writer. A masked model fills the prompt's <|mask|> tokens instead."""
        if self.masked:
            records = []
            for item in batch:
                result = self.fill_masks(item["prompt"], self.sampling.top_k or 5)
                print(result["completion"], flush=True)
                for n, candidates in enumerate(result["candidates"], start=1):
                    print(f"  {MASK} {n}: " + ", ".join(f"{text!r} {p:.3f}" for text, p in candidates), flush=True)
                print("-" * 40, flush=True)
                records.append(item | result)
            return records
        results = self.complete([item["prompt"] for item in batch], self.sampling, self._predict_generator, self.stream)
        settings = asdict(self.sampling) | {"seed": self.sample_seed}
        records = []
        for item, result in zip(batch, results):
            if not self.stream:
                print(start_ids(self.tokenizer, result.prompt)[1] + result.text, flush=True)
                print("-" * 40, flush=True)
            records.append(item | {"completion": result.text, "finish": result.finish, "settings": settings})
        return records

    def on_validation_epoch_end(self) -> None:
        # A short sample in TensorBoard at every validation: watch the text take shape.
        if self.trainer.sanity_checking or not self.hparams.val_sample_tokens or self.tokenizer is None or self.masked:
            return
        if not self.trainer.is_global_zero or not isinstance(self.logger, TensorBoardLogger):
            return
        settings = SamplingSettings(max_new_tokens=self.hparams.val_sample_tokens, temperature=0.8, stop_at_eot=False)
        generator = torch.Generator(device=self.device).manual_seed(self.sample_seed)
        (result,) = self.complete([None], settings, generator)
        text = start_ids(self.tokenizer, None)[1] + result.text
        # Indent four spaces: TensorBoard renders text as Markdown, and this keeps it verbatim.
        self.logger.experiment.add_text("val/sample", "    " + text.replace("\n", "\n    "), self.global_step)
