"""Where runs live, and finding their checkpoints again.

A run of `python main.py fit --config configs/X.yaml` writes to
lightning_logs/X/version_N/ (TensorBoard events, config.yaml, hparams.yaml) and its
checkpoints to lightning_logs/X/version_N/checkpoints/: last.ckpt (the latest step) and
the one with the best validation loss. Each new run gets the next version_N, so runs
compare side by side in TensorBoard; a resumed run carries on in its own folder.

    --ckpt_path last    the newest last.ckpt of this experiment (the highest version_N that has one)
    --ckpt_path best    the best checkpoint of that same run

One fit at a time writes a run folder: a new run claims its version_N by making the
folder (two runs started at once never share one), and holds a lock on it (version_N/.lock)
until the process ends, however it ends; a second fit resuming the same run is refused.

Plain Python, no Lightning.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None

LAST = "last.ckpt"
LOCK = ".lock"


class RunInUse(OSError):
    """Another process is writing to this run folder."""


def version_number(folder: Path) -> int | None:
    """N of a version_N folder, else None."""
    match = re.fullmatch(r"version_(\d+)", folder.name)
    return int(match.group(1)) if match else None


def run_folders(experiment: Path) -> list[Path]:
    """The version_N folders of an experiment (lightning_logs/X), newest first."""
    if not experiment.is_dir():
        return []
    folders = [p for p in experiment.iterdir() if p.is_dir() and version_number(p) is not None]
    return sorted(folders, key=version_number, reverse=True)


def newest_last(experiment: Path) -> Path | None:
    """The last.ckpt of the newest run of the experiment that has one."""
    for folder in run_folders(experiment):
        last = folder / "checkpoints" / LAST
        if last.exists():  # a file, or the folder of a sharded checkpoint
            return last
        if last.with_name(LAST + ".old").exists():  # a sharded save cut between its two renames (save_whole)
            return last.with_name(LAST + ".old")
    return None


def run_of(checkpoint: Path, experiment: Path) -> int | None:
    """The version N when the checkpoint lies in experiment/version_N/checkpoints/, else None:
    a fit resumed from it carries on in that folder."""
    folder = checkpoint.resolve().parent.parent
    if checkpoint.resolve().parent.name != "checkpoints" or folder.parent != experiment.resolve():
        return None
    return version_number(folder)


def describe_missing(experiment: Path) -> str:
    """Why there is no checkpoint to resume, and what to do."""
    runs = run_folders(experiment)
    if not runs:
        return f"there are no runs in {experiment}/ yet (is it the --config you trained with?)"
    return f"none of the {len(runs)} runs in {experiment}/ has checkpoints/{LAST} (they stopped before saving one)"


def claim_new_run(experiment: Path) -> int:
    """The next version N of the experiment, its folder made here and now: mkdir succeeds
    for one process only, so two runs started at the same moment get different folders."""
    experiment.mkdir(parents=True, exist_ok=True)
    runs = run_folders(experiment)
    version = version_number(runs[0]) + 1 if runs else 0
    while True:
        try:
            (experiment / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1


@contextlib.contextmanager
def hold_run(folder: Path) -> Iterator[None]:
    """Hold the run folder for this process: raises RunInUse when another process holds it.
    The lock is the kernel's (flock), so a killed process never leaves a stale one. A run
    that wrote nothing (it failed before training) leaves no folder behind."""
    if fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)  # empty: the lock is the content
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunInUse(
            f"{folder} is being written by another fit that is still running; wait for it to finish "
            "(or stop it: it saves on SIGINT/SIGTERM), or start a new run without --ckpt_path"
        ) from None
    try:
        yield
    finally:
        if [p.name for p in folder.iterdir()] == [LOCK]:  # the run stopped before writing anything
            (folder / LOCK).unlink()
            folder.rmdir()
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def new_run(experiment: Path) -> Iterator[int]:
    """Claim the experiment's next version N and hold its folder; folders made for it that
    are still empty at the end (the run failed before writing anything) are removed."""
    made = [p for p in (experiment, *experiment.parents) if not p.exists()]  # deepest first
    version = claim_new_run(experiment)
    try:
        with hold_run(experiment / f"version_{version}"):
            yield version
    finally:
        for folder in made:
            with contextlib.suppress(OSError):  # not empty: the run wrote to it
                folder.rmdir()


def tensorboard_section(config: Any) -> Any:
    """The TensorBoardLogger section of a parsed config's trainer, or None (another logger, or none)."""
    logger = config.trainer.logger
    return logger if str(getattr(logger, "class_path", "")).endswith(("TensorBoardLogger", "RunLogger")) else None


def experiment_dir(config: Any) -> Path:
    """The folder whose version_N runs `--ckpt_path last` looks in: lightning_logs/<config name>."""
    logger = tensorboard_section(config)
    if logger is None:  # no TensorBoard: checkpoints go to default_root_dir/checkpoints
        return Path(config.trainer.default_root_dir or ".")
    return Path(logger.init_args.save_dir) / (logger.init_args.name or "")


def set_run_name(config: Any) -> None:
    """Name the TensorBoard logger of a parsed config after its config file, unless named."""
    logger = tensorboard_section(config)
    if logger is not None and not logger.init_args.name:
        logger.init_args.name = run_name(config)


def hold_run_folder(config: Any, held: contextlib.ExitStack) -> None:
    """Claim a fit's version_N folder (a new run) or lock it (a resumed one) until `held`
    closes: one process writes a run at a time."""
    logger = tensorboard_section(config)
    if logger is None:
        return
    experiment, version = experiment_dir(config), logger.init_args.version
    if version is None:
        logger.init_args.version = held.enter_context(new_run(experiment))
    else:  # resuming (or a version given): the run's own folder
        folder = version if isinstance(version, str) else f"version_{version}"
        held.enter_context(hold_run(experiment / folder))


def run_name(config: Any) -> str:
    """The run folder's name: runs of configs/X.yaml go to lightning_logs/X/version_N (of
    configs/teaching/X.yaml to lightning_logs/teaching_X/), runs without a config to
    lightning_logs/version_N."""
    files = config.get("config") or []
    if not files:
        return ""
    path = Path(str(files[-1])).resolve().with_suffix("")
    parts = path.parts[path.parts.index("configs") + 1 :] if "configs" in path.parts else (path.name,)
    return "_".join(parts)


def resume_command(argv: list[str]) -> str:
    """The command that resumes this one: the same arguments, with --ckpt_path last."""
    args, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--ckpt_path="):
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        args.append(arg)
    return shlex.join(["python", "main.py", *args, "--ckpt_path", "last"])
