"""What LitGPT asks of the machine it runs on: random states a checkpoint can hold, values
from every rank, TF32 on CUDA, a compiled forward, and the optimizer for the precision in use."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from gpt.data.datasets import grad_accumulation
from gpt.eval.report import cpu_bf16_slowdown
from gpt.model.optim import WarmupCosine, adamw, describe_groups, muon_adamw
from gpt.train.callbacks import DropoutSchedule

log = logging.getLogger(__name__)  # shown on rank 0 (gpt/train/cli.py)


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


def set_precision(trainer: L.Trainer, tf32: bool) -> None:
    """TF32 where it applies, and a word where bf16 would be slow."""
    set_matmul_precision(trainer.strategy.root_device, tf32)
    warn_if_bf16_is_slow(trainer)


_warned_bf16: list[bool] = []


def warn_if_bf16_is_slow(trainer: L.Trainer) -> None:
    """bf16 on a CPU without native bf16 (AVX2 only) runs its matmuls tens of times slower than
    fp32: say so once, with the cost measured here, rather than train silently slower."""
    if _warned_bf16 or trainer.strategy.root_device.type != "cpu" or "bf16" not in str(trainer.precision):
        return
    slowdown = cpu_bf16_slowdown()
    if slowdown > 2:
        _warned_bf16.append(True)
        log.warning(
            f"warning: this CPU has no native bf16 in use (torch's CPU capability: "
            f"{torch.backends.cpu.get_cpu_capability()}): a bf16 matmul takes {slowdown:.0f}x as long as fp32's "
            f"(measured now), so trainer.precision {trainer.precision} trains many times slower than 32-true"
        )


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


def optimizer_and_schedule(hp: Any, model: torch.nn.Module, trainer: L.Trainer) -> dict[str, Any]:
    """The optimizer (make_optimizer) and the warmup + cosine schedule, stepped every optimizer step."""
    optimizer = make_optimizer(hp, model, trainer)
    log.info(f"{type(optimizer).__name__}: {describe_groups(optimizer.param_groups)}")
    if hp.decay_steps is None:  # this run's horizon, saved with it: a resumed run keeps it
        steps = trainer.estimated_stepping_batches  # max_steps, or epochs x batches
        if steps == float("inf"):
            raise ValueError(
                "the learning rate decays over the run's steps, but this run has no number of steps "
                "(trainer.max_steps -1 and no max_epochs: max_time alone); give --trainer.max_steps, "
                "or --model.decay_steps for the schedule"
            )
        hp.decay_steps = int(steps)
    scheduler = WarmupCosine(optimizer, hp.learning_rate, hp.min_lr, hp.warmup_steps, hp.decay_steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def apply_settings(optimizer: torch.optim.Optimizer, hp: Any) -> None:
    """This run's betas and weight decay in an optimizer (one resumed keeps those it was saved with)."""
    for group in optimizer.param_groups:
        group["betas"] = (hp.beta1, hp.beta2)
        group["weight_decay"] = hp.weight_decay if group.get("name") in ("decay", "muon") else 0.0


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


def apply_tokens_per_step(trainer: L.Trainer, data: Any) -> None:
    """Before fit: the gradient accumulation that tokens_per_step asks for, said once. With
    accumulation, validation stays every val_check_interval optimizer steps (Lightning
    counts micro-batches)."""
    if data.tokens_per_step is not None:
        k = grad_accumulation(data.tokens_per_step, data.batch_size, data.block_size, trainer.world_size)
        if trainer.accumulate_grad_batches not in (1, k):
            raise ValueError(
                f"data.tokens_per_step {data.tokens_per_step:,} means accumulating {k} micro-batches, but "
                f"trainer.accumulate_grad_batches is {trainer.accumulate_grad_batches}; give one of the two"
            )
        trainer.accumulate_grad_batches = k
        if trainer.is_global_zero:
            print(
                f"tokens per step: {data.tokens_per_step:,} = {trainer.world_size} device"
                f"{'s' if trainer.world_size > 1 else ''} x {data.batch_size} "
                f"sequences x {data.block_size} tokens x {k} micro-batches accumulated",
                file=sys.stderr,
            )
    if trainer.accumulate_grad_batches > 1 and getattr(data, "objective", None) == "grpo":
        raise ValueError(
            f"model.objective grpo samples and learns from one batch of problems a step, and gradient accumulation "
            f"({trainer.accumulate_grad_batches} micro-batches) would split it: give more problems a step with "
            "data.batch_size, without data.tokens_per_step or trainer.accumulate_grad_batches"
        )
    if trainer.accumulate_grad_batches > 1 and isinstance(trainer.val_check_interval, int):
        trainer.val_check_interval *= trainer.accumulate_grad_batches
