"""Lightning callbacks: training speed (ms per step, tokens/s, MFU), a progress bar of
optimizer steps, a JSON-lines writer for predict, and a dropout schedule. (Checkpoints and
signals: gpt/train/checkpointing.py; TensorBoard's pictures: gpt/train/tensorboard.py.)"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from lightning.fabric.utilities.throughput import get_available_flops
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, TQDMProgressBar

from gpt.eval.report import gpu_peak_flops, matmul_peak_flops
from gpt.files import atomic_write


def tokens_in(batch: Any, pl_module: L.LightningModule) -> int | torch.Tensor:
    """Tokens a training batch holds: (x, y) windows, or (x, y, attention_mask) padded examples
    (a count left on the device: reading it would wait for the GPU at every step), or for GRPO's
    problems the prompts and completions its step trained on."""
    if isinstance(batch[0], dict):
        return pl_module.rl.tokens
    return batch[2].sum() if len(batch) == 3 else batch[0].numel()


def peak_flops(trainer: L.Trainer) -> float | None:
    """FLOP/s one device can do at this precision: the datasheet's on a known GPU (ours,
    gpt.eval.report.PEAK_FLOPS, else Lightning's table), a measured matmul on a CPU."""
    device = trainer.strategy.root_device
    precision = str(trainer.precision)
    dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else torch.float32
    if device.type == "cuda":
        tf32 = torch.get_float32_matmul_precision() != "highest"  # fp32 matmuls on tensor cores
        name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "tf32" if tf32 else "fp32")
        return gpu_peak_flops(torch.cuda.get_device_name(device), name) or get_available_flops(device, dtype)
    return matmul_peak_flops(device, dtype) if device.type == "cpu" else None


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it on Linux (platform.processor() elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware(trainer: L.Trainer) -> str:
    """What a run trains on, in a line: devices x the device's name, and the precision, e.g.
    "1 x NVIDIA H100 80GB HBM3, bf16-mixed" or "1 x CPU (AMD EPYC 7B13, 2 threads), 32-true"."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = f"CPU ({cpu_name()}, {torch.get_num_threads()} threads)"
    else:
        name = device.type
    return f"{trainer.world_size} x {name}, {trainer.precision}"


class SpeedMonitor(Callback):
    """How fast training goes, as nanoGPT prints it, in TensorBoard every log_every_n_steps:

    train/ms_per_step     wall time of an optimizer step (validation excluded)
    train/tokens_per_sec  tokens trained on per second, all devices together
    train/tokens          tokens seen since the run began (padding not counted)
    train/mfu             model FLOP utilisation: the model's FLOPs per second over what
                          the devices can do (see peak_flops)

    Checkpoints hold the token count, the wall time of fit since training began (validation
    included; data preparation before it not) and the hardware it ran on: a resumed run counts
    on from where it stopped, and a report card (gpt/eval/card.py) reads them.
    """

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0  # of the runs before a resume; this one's from _started
        self.hardware: list[str] = []  # one entry for each different machine the run trained on
        self._started: float | None = None
        self._window_start: float | None = None
        self._window_tokens = 0
        self._window_steps = 0
        self._validating_since: float | None = None
        self._last_step = -1

    def state_dict(self) -> dict[str, Any]:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return {"tokens": int(self.tokens), "seconds": round(self.seconds + running, 3), "hardware": self.hardware}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens = state["tokens"]
        self.seconds = state.get("seconds", 0.0)  # checkpoints before these were recorded: unknown, 0
        self.hardware = list(state.get("hardware", []))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        machine = hardware(trainer)
        if machine not in self.hardware:
            self.hardware.append(machine)
        self.peak = peak_flops(trainer)
        model = getattr(pl_module, "model", None)
        self.flops_per_token = model.flops_per_token() if hasattr(model, "flops_per_token") else None
        self._last_step = trainer.global_step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._window_start is None:
            self._window_start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        n = tokens_in(batch, pl_module)
        if trainer.world_size > 1 and (isinstance(batch[0], dict) or len(batch) == 3):  # each rank its own count
            n = trainer.strategy.reduce(n, reduce_op="sum")
        elif trainer.world_size > 1:  # windows: every rank's batch has the same shape
            n *= trainer.world_size
        self.tokens = self.tokens + n  # a device tensor for padded examples, read on the steps it is logged
        self._window_tokens = self._window_tokens + n
        if trainer.global_step == self._last_step:
            return  # accumulating gradients: the step is not over
        self._window_steps += trainer.global_step - self._last_step
        self._last_step = trainer.global_step
        if trainer.global_step % max(1, trainer.log_every_n_steps):
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # the step's kernels have run, not just been queued
        seconds = time.perf_counter() - self._window_start
        tokens_per_sec = float(self._window_tokens) / seconds
        pl_module.log("train/ms_per_step", 1000 * seconds / self._window_steps)
        pl_module.log("train/tokens_per_sec", tokens_per_sec)
        pl_module.log("train/tokens", float(self.tokens))
        if self.peak and self.flops_per_token:
            pl_module.log("train/mfu", self.flops_per_token * tokens_per_sec / (self.peak * trainer.world_size))
        self._window_start, self._window_tokens, self._window_steps = time.perf_counter(), 0, 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validating_since = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._window_start is not None and self._validating_since is not None:
            self._window_start += time.perf_counter() - self._validating_since  # not training time
        self._validating_since = None


class JSONLinesWriter(BasePredictionWriter):
    """Save what predict writes, one JSON object a sample: index (of the prompt), sample,
    prompt (null: none), completion, finish ("stop", "eot" or "length") and settings.

        python main.py predict --ckpt_path ... --trainer.callbacks+=gpt.train.callbacks.JSONLinesWriter \\
            --trainer.callbacks.path samples.jsonl
    """

    def __init__(self, path: str = "predictions.jsonl"):
        super().__init__(write_interval="batch")
        self.path = Path(path)

    def _file(self, trainer: L.Trainer) -> Path:
        # One file a process under DDP, so that ranks never write into one another's lines.
        return self.path if trainer.world_size == 1 else self.path.with_suffix(f".rank{trainer.global_rank}.jsonl")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self._file(trainer)
        if path.is_dir():
            raise ValueError(
                f"the JSON-lines writer's path {str(path)!r} is a folder; give a file name, e.g. {path}/samples.jsonl"
            )
        # Written beside the target and renamed over it when predict ends: a run that fails
        # leaves the previous file as it was, and a reader never sees half a run.
        self._files = contextlib.ExitStack()
        self._out = self._files.enter_context(atomic_write(path, "w", encoding="utf-8"))

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        for record in prediction:
            self._out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._files.close()  # the finished file takes the target's name

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        files = getattr(self, "_files", None)
        if files is not None:
            files.__exit__(type(exception), exception, exception.__traceback__)  # the unfinished file is deleted


class DropoutSchedule(Callback):
    """Dropout moved linearly from `start` to `end` over the first `steps` optimizer steps,
    then held at `end`; logged as train/dropout. Some recipes start high against early
    overfitting and lower it as the model needs its capacity, or the reverse.

        trainer:
          callbacks:
            - class_path: gpt.train.callbacks.DropoutSchedule
              init_args: {start: 0.2, end: 0.0, steps: 1000}
    """

    def __init__(self, start: float = 0.1, end: float = 0.0, steps: int = 1000):
        for name, p in (("start", start), ("end", end)):
            if not 0 <= p < 1:
                raise ValueError(f"DropoutSchedule {name} must be in [0, 1), got {p}")
        if steps < 1:
            raise ValueError(f"DropoutSchedule steps must be >= 1, got {steps}")
        self.start, self.end, self.steps = start, end, steps

    def value(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(1.0, step / self.steps)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Found once, set at every step.
        self.dropouts = [m for m in pl_module.modules() if isinstance(m, nn.Dropout)]
        self.attentions = [m for m in pl_module.modules() if isinstance(getattr(m, "dropout", None), float)]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        p = self.value(trainer.global_step)
        for module in self.dropouts:
            module.p = p
        for module in self.attentions:  # attention's dropout inside SDPA is a float
            module.dropout = p
        if (trainer.global_step + 1) % max(1, trainer.log_every_n_steps) == 0:
            pl_module.log("train/dropout", p)


class StepProgressBar(TQDMProgressBar):
    """The training bar counts optimizer steps up to max_steps (Lightning's counts the batches
    of an epoch, and an epoch of every window is longer than most runs)."""

    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        bar = self.train_progress_bar
        total = trainer.max_steps if trainer.max_steps >= 0 else trainer.estimated_stepping_batches
        bar.set_description("step", refresh=False)
        bar.reset(total=None if total == float("inf") else int(total))
        bar.initial = bar.n = trainer.global_step  # a resumed run starts where it stopped
        bar.refresh()

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        pass  # one bar for the run: Lightning's would restart it, named "Epoch N", at every epoch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        bar = self.train_progress_bar
        if bar.disable or trainer.global_step == bar.n:
            return  # accumulating gradients: the step is not over
        if trainer.global_step % self.refresh_rate == 0 or trainer.global_step == bar.total:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module))
