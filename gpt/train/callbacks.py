"""Lightning callbacks and plugins: training speed (ms per step, tokens/s, MFU), a JSON-lines writer for
predict, a dropout schedule, stopping cleanly on a signal, and checkpoint files written and
read safely."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.throughput import get_available_flops
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from gpt.eval.report import gpu_peak_flops, matmul_peak_flops
from gpt.files import atomic_write
from gpt.interop.checkpoint import load_checkpoint


def tokens_in(batch: Any) -> int | torch.Tensor:
    """Tokens a training batch holds: (x, y) windows, or (x, y, attention_mask) padded examples
    (a count left on the device: reading it would wait for the GPU at every step)."""
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


class SpeedMonitor(Callback):
    """How fast training goes, as nanoGPT prints it, in TensorBoard every log_every_n_steps:

    train/ms_per_step     wall time of an optimizer step (validation excluded)
    train/tokens_per_sec  tokens trained on per second, all devices together
    train/tokens          tokens seen since the run began (padding not counted)
    train/mfu             model FLOP utilisation: the model's FLOPs per second over what
                          the devices can do (see peak_flops)

    The token count is saved in checkpoints: a resumed run counts on from where it stopped.
    """

    def __init__(self) -> None:
        self.tokens = 0
        self._window_start: float | None = None
        self._window_tokens = 0
        self._window_steps = 0
        self._validating_since: float | None = None
        self._last_step = -1

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": int(self.tokens)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens = state["tokens"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.peak = peak_flops(trainer)
        model = getattr(pl_module, "model", None)
        self.flops_per_token = model.flops_per_token() if hasattr(model, "flops_per_token") else None
        self._last_step = trainer.global_step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._window_start is None:
            self._window_start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        n = tokens_in(batch)
        if trainer.world_size > 1 and len(batch) == 3:  # padded examples: every rank has its own count
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


class ValidateAtTheEnd(Callback):
    """Validate after the last training step, wherever it falls. Lightning validates every
    val_check_interval steps only, so a run of 1000 steps validating every 300 would end with
    its last 100 steps neither measured nor in last.ckpt. Asking to stop at the last step
    (should_stop, as early stopping does) makes Lightning validate there, and the checkpoint
    callback save."""

    def __init__(self) -> None:
        self._last_step: int | None = None  # set when this callback asked for the last validation

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        loop = trainer.fit_loop
        last_step = 0 <= trainer.max_steps <= trainer.global_step
        last_epoch = loop.max_epochs is not None and 0 <= loop.max_epochs <= trainer.current_epoch + 1
        if last_step or (last_epoch and loop.epoch_loop.batch_progress.is_last_batch):
            trainer.should_stop = True
            self._last_step = trainer.global_step

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self._last_step == trainer.global_step and trainer.validating and not on_the_validation_grid(trainer):
            # A checkpoint saved in a validation holds the loggers' step count from before the
            # step is counted; resuming, Lightning counts it by passing over that validation
            # again, but only at a step where validation is due by the interval. This one was
            # not: count the step here, or a resumed run logs one step behind.
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] += 1


def on_the_validation_grid(trainer: L.Trainer) -> bool:
    """Whether Lightning validates at this step by val_check_interval (as it decides when resuming)."""
    loop = trainer.fit_loop.epoch_loop
    batch = loop.total_batch_idx if trainer.check_val_every_n_epoch is None else loop.batch_idx
    return trainer.val_check_batch != float("inf") and (batch + 1) % trainer.val_check_batch == 0


class SaveOnInterrupt(Callback):
    """Ctrl-C (SIGINT) or SIGTERM (a cluster scheduler, `docker stop`, a preempted machine)
    during fit: finish the current step (and its validation, if one is due), save it as
    last.ckpt with everything a resume needs (data position, optimizer, random state), and
    stop; main.py then exits with 128 + the signal's number and says how to resume. A
    second signal aborts at once. Under DDP every rank stops after the same step.

    `interrupted` holds (signal number, step, checkpoint path) once a checkpoint is saved,
    `rank` the process's rank (main.py says what happened on rank 0 only).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None  # the first signal, until the step ends
        self.interrupted: tuple[int, int, str] | None = None
        self.rank = 0
        self._validated_at: int | None = None  # the step whose validation ran last
        self._saving = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # In place of Lightning's SIGTERM handler (installed just before), which would stop in
        # the middle of a validation. Lightning puts the handlers from before fit back at its end.
        self.rank = trainer.global_rank
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # the second signal: stop now, save nothing
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        name = signal.Signals(signum).name
        print(f"\n{name}: stopping after this step and saving it (send {name} again to abort at once)", file=sys.stderr)

    def _agreed(self, trainer: L.Trainer) -> bool:
        """Whether any rank has received a signal, agreed by all (one all-reduce a step under DDP)."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return self.received is not None  # one process: no tensor, no wait for the GPU
        flag = torch.tensor([0 if self.received is None else self.received], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() and self.received is None:
            self.received = int(flag.item())  # another rank got it
        return bool(flag.item())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Lightning stops at the end of this step when received_sigterm is set; a validation
        # due at this step still runs, whole (see on_validation_start / _end). Never between
        # the micro-batches of one step: their summed gradients are in no checkpoint.
        if trainer.fit_loop.epoch_loop._should_accumulate():
            return
        if self._agreed(trainer):
            trainer._signal_connector.received_sigterm = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            trainer._signal_connector.received_sigterm = False  # let this validation finish

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "fit":
            return
        self._validated_at = trainer.global_step
        if self._agreed(trainer):
            trainer._signal_connector.received_sigterm = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # At the last step of an epoch Lightning stops only after closing the epoch, a state
        # it does not resume from correctly: save here, the end-of-epoch state it does.
        if trainer.received_sigterm and self.received is not None:
            self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.received is not None and self.interrupted is None:
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        path = last_checkpoint_path(trainer)
        self._saving = True
        trainer.save_checkpoint(path, weights_only=False)  # the whole state: weights, optimizer, loops, data
        self._saving = False
        self.interrupted = (self.received, trainer.global_step, str(path))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self._saving and self._validated_at == trainer.global_step:
            # Lightning resumes a checkpoint taken after a step's validation by passing over that
            # validation once more, which counts the step again for the loggers. It expects the
            # count the checkpoint callback saves, before the step is counted: give it that one,
            # and the resumed run logs every value at the step an uninterrupted run does.
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where the checkpoint callback keeps last.ckpt (the run's checkpoints/ folder)."""
    callback = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class SafeCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically beside their target (flushed, fsynced, renamed: a crash
    never leaves half a file or loses the previous one), and read through gpt.interop.checkpoint:
    checked whole, weights_only, finite."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):  # object storage: fsspec's transaction is its atomic write
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path) as f:
            try:
                torch.save(checkpoint, f)
            except RuntimeError as e:  # torch's zip writer hides a failed write (a full disk) behind its own error
                if isinstance(e.__context__, OSError):
                    raise e.__context__ from None
                raise

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path)
