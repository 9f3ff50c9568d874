"""Checkpoints that a crash or a signal cannot spoil: the run's best checkpoint, and last.ckpt,
the latest state, at every validation and every few minutes of training, both in the run's
checkpoints/ folder whatever checkpoint callbacks a user adds; a validation (and a checkpoint)
after the last step; a clean stop on SIGINT/SIGTERM that saves last.ckpt first; and checkpoint
files written atomically and read safely."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException

from gpt.files import atomic_write
from gpt.interop.checkpoint import LAST, load_checkpoint, refuse_sharded


class RunCheckpoint(ModelCheckpoint):
    """The run's own best checkpoint (the checkpoint.* settings), in its checkpoints/ folder. A
    class of its own, so that the ModelCheckpoints a user adds (--trainer.callbacks+=...), with
    or without a monitor, are told apart from it: its state has its own key in a checkpoint
    (theirs may have the same settings), last.ckpt is kept beside it, and the end of fit names
    it. Checkpoints from before it kept its state under ModelCheckpoint's key: SafeCheckpointIO
    reads that as this one's."""

    @property
    def legacy_state_key(self) -> str:
        return ModelCheckpoint.__qualname__ + self.state_key.removeprefix(type(self).__qualname__)


class LatestCheckpoint(Checkpoint):
    """last.ckpt: the run's latest state, whatever validation says. Written at every validation
    (one follows the last step: ValidateAtTheEnd), at the end of training, and after the first
    step that ends `interval` or more after the last save, so a crash, an out-of-memory kill or
    `kill -9` loses at most that much training. (Lightning 2.6's own save_last writes it only
    when a top-k checkpoint is saved in the same validation: once validation stops improving,
    last.ckpt would stay at the best step.) A Checkpoint, so Lightning runs it after the best
    checkpoint's callback, whose state (the best path) this file then holds up to date."""

    def __init__(self, interval: timedelta | None = timedelta(minutes=30)):
        self.seconds = None if interval is None else interval.total_seconds()
        self.last_model_path = ""
        self._saved_at: float | None = None  # time.monotonic() of the last save, or of the start
        self._step = -1  # the optimizer step whose end was seen last
        self._saved_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_at, self._step = time.monotonic(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.seconds is None or trainer.global_step == self._step:
            return  # no time limit, or accumulating gradients: the step is not over
        self._step = trainer.global_step
        due = time.monotonic() - self._saved_at >= self.seconds
        if trainer.strategy.broadcast(due):  # every rank as rank 0 decides: saving is collective
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_step != trainer.global_step:
            self.save(trainer)  # a run that never validated (limit_val_batches 0, say)

    def save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run:  # a dry run writes nothing, as Lightning's own callbacks
            return
        path = last_checkpoint_path(trainer)
        save_whole(trainer, path)
        self.last_model_path, self._saved_at, self._saved_step = str(path), time.monotonic(), trainer.global_step


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
        if trainer.fast_dev_run:  # a dry run writes nothing: stop, with nothing to resume
            self.interrupted = (self.received, trainer.global_step, None)
            return
        self._saving = True
        save_whole(trainer, path)
        self._saving = False
        self.interrupted = (self.received, trainer.global_step, str(path))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self._saving and self._validated_at == trainer.global_step:
            # Lightning resumes a checkpoint taken after a step's validation by passing over that
            # validation once more, which counts the step again for the loggers. It expects the
            # count the checkpoint callback saves, before the step is counted: give it that one,
            # and the resumed run logs every value at the step an uninterrupted run does.
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


def save_whole(trainer: L.Trainer, path: Path) -> None:
    """The whole state (weights, optimizer, loops, data position: a run resumes from it) at path,
    replacing what is there only once written. A file: SafeCheckpointIO writes it beside and
    renames it. Under FSDP the checkpoint may be a folder of shards, which Lightning writes in
    place: it is written to a fresh folder and swapped in (the previous one renamed to .old
    first, so a crash between the two renames leaves last.ckpt.old whole)."""
    if not isinstance(trainer.strategy, FSDPStrategy):
        trainer.save_checkpoint(path, weights_only=False)
        return
    fresh, old = path.with_name(path.name + ".partial"), path.with_name(path.name + ".old")
    if trainer.is_global_zero:
        remove(fresh)  # the shards of a save cut short: none may stay among the new ones
    trainer.strategy.barrier("save_whole")
    trainer.save_checkpoint(fresh, weights_only=False)
    if trainer.is_global_zero:
        if path.exists():
            os.replace(path, old)
        os.replace(fresh, path)
        remove(old)
    trainer.strategy.barrier("save_whole")


def remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where the run keeps last.ckpt: beside its best checkpoint, in the run's checkpoints/
    folder (never in the folder of a ModelCheckpoint a user added)."""
    run = next((c for c in trainer.callbacks if isinstance(c, RunCheckpoint)), None)
    return Path(run.dirpath if run is not None and run.dirpath else checkpoints_folder(trainer)) / LAST


def checkpoints_folder(trainer: L.Trainer) -> Path:
    """The run's checkpoints/ folder as Lightning's ModelCheckpoint finds it: in the first
    logger's version folder, else in default_root_dir (checkpointing off: a signal's save)."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir) / "checkpoints"
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version / "checkpoints"


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

    def __init__(self, run_checkpoint: RunCheckpoint | None = None):
        super().__init__()
        self.run_checkpoint = run_checkpoint

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        checkpoint = load_checkpoint(path)
        refuse_sharded(checkpoint)  # FSDP reads its shards itself; any other strategy cannot
        states, run = checkpoint.get("callbacks") or {}, self.run_checkpoint
        if run is not None and run.state_key not in states and run.legacy_state_key in states:
            states[run.state_key] = states.pop(run.legacy_state_key)  # written before RunCheckpoint
        return checkpoint
