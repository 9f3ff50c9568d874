"""What LitGPT does for fine-tuning: the starting weights (a checkpoint of ours or GPT-2's,
with new token rows), LoRA adapters, DPO's frozen reference and step, checkpoints that hold the
adapters alone, and chat prompts for predict.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from gpt.data.templates import template
from gpt.interop.checkpoint import load_checkpoint
from gpt.interop.init import is_checkpoint, load_init
from gpt.model.dpo import dpo_loss, sequence_logprobs
from gpt.model.lora import adapter_state, adapters_off, apply_lora

log = logging.getLogger(__name__)  # shown on rank 0 (gpt/train/cli.py)


def prepare(module: Any, stage: str = "fit") -> None:
    """Once, at setup: load init_from (its tokenizer may have grown: new rows start at the mean
    embedding), put the LoRA adapters in, and keep DPO's and GRPO's reference (GRPO's for fit
    alone: nothing else reads it), and for GRPO the template init_from was tuned with. What was
    done is said in fit only: predicting from a LoRA checkpoint loads its base too, but trains nothing."""
    if getattr(module, "prepared", False):
        return
    module.prepared = True
    init_from = module.hparams.init_from
    added = set(module.tokenizer.special_tokens.values()) if module.tokenizer is not None else set()
    grown = load_init(module.model, init_from, added) if init_from else 0
    if init_from and stage == "fit":
        log.info(f"started from {init_from}" + (f"; {grown} new token rows at the mean embedding" if grown else ""))
    if module.lora is not None:
        if grown:
            new = [t for t, i in module.tokenizer.special_tokens.items() if i >= module.config.vocab_size - grown]
            raise ValueError(
                f"LoRA keeps the embeddings frozen, so the tokens {', '.join(new)}, which {init_from} lacks, could "
                "not learn; fine-tune fully first (the same command without model.lora), or use "
                "--data.instructions.template alpaca, whose markers are text"
            )
        apply_lora(module.model, module.lora)
        module.strict_loading = False  # a checkpoint may hold the adapters alone
        trainable = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in module.model.parameters())
        if stage == "fit":
            log.info(f"LoRA r={module.lora.r}: {trainable:,} of {total:,} parameters train ({trainable / total:.2%})")
    if module.grpo is not None and init_from and module.template is None:
        name = load_checkpoint(init_from).get("template") if is_checkpoint(init_from) else None
        if name is None:
            raise ValueError(
                f"model.init_from {init_from} was not fine-tuned on instructions (it has no template), and GRPO "
                "asks its problems through the model's own: tune it with data.instructions first (docs/finetune.md)"
            )
        module.template = template(name)
    if (module.dpo or (module.grpo is not None and stage == "fit")) and module.lora is None:
        # The model as it starts, frozen: a submodule, so checkpoints keep it and a resumed run
        # compares against the same reference. (With LoRA: the model with its adapters off.)
        module.reference = copy.deepcopy(module.model).requires_grad_(False).eval()


def reference_logits(module: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The frozen reference's logits: its own copy, or with LoRA the model with its adapters off."""
    with torch.no_grad():
        if module.reference is not None:
            return module.reference(x, attention_mask=mask)
        with adapters_off(module.model):
            training = module.model.training
            module.model.eval()  # no dropout in the reference
            logits = module.model(x, attention_mask=mask)
            module.model.train(training)
        return logits


def reference_logprobs(module: Any, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return sequence_logprobs(reference_logits(module, x, mask), y)


def dpo_step(module: Any, batch: tuple[torch.Tensor, ...], prefix: str, log_values: bool) -> torch.Tensor:
    """DPO's loss on a batch of B pairs (rows 0..B-1 chosen, B..2B-1 rejected), with the reward
    margin, the preference accuracy and each reply's log-probability logged."""
    x, y, mask = batch
    policy = sequence_logprobs(module.run_model(x, mask), y)
    reference = reference_logprobs(module, x, y, mask)
    n = x.size(0) // 2
    loss, chosen, rejected = dpo_loss(policy[:n], policy[n:], reference[:n], reference[n:], module.hparams.dpo_beta)
    if log_values:
        on_epoch = prefix != "train"  # validation: the mean over the split
        values = {
            f"{prefix}/reward_margin": (chosen - rejected).mean(),
            f"{prefix}/reward_accuracy": (chosen > rejected).float().mean(),
            f"{prefix}/logp_chosen": policy[:n].detach().mean(),
            f"{prefix}/logp_rejected": policy[n:].detach().mean(),
        }
        module.log_dict(values, on_step=not on_epoch, on_epoch=on_epoch, batch_size=n)
        if prefix == "train":
            module.log("train/loss", loss, prog_bar=True)
    return loss


def keep_adapters_only(module: Any, checkpoint: dict[str, Any]) -> None:
    """With LoRA, a checkpoint holds the adapters alone (and names its base, loaded again on
    resume): megabytes where the whole model is hundreds."""
    if module.lora is None or not module.hparams.init_from:
        return
    adapters = {f"model.{name}" for name in adapter_state(module.model)}
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in adapters}
    checkpoint["lora_base"] = str(Path(module.hparams.init_from).resolve())  # found from any folder
