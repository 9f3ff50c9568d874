"""Where runs live, and finding their checkpoints again.

A run of `python main.py fit --config configs/X.yaml` writes to
lightning_logs/X/version_N/ (TensorBoard events, config.yaml, hparams.yaml) and its
checkpoints to lightning_logs/X/version_N/checkpoints/: last.ckpt (the latest step) and
the one with the best validation loss. Each new run gets the next version_N, so runs
compare side by side in TensorBoard; a resumed run carries on in its own folder.

    --ckpt_path last    the newest last.ckpt of this experiment (the highest version_N that has one)
    --ckpt_path best    the best checkpoint of that same run

`--trainer.default_root_dir DIR` moves lightning_logs/ into DIR (as Lightning's own logger);
a CSVLogger (or a TensorBoardLogger of the user's) keeps the same layout in its save_dir;
without a logger the checkpoints go to DIR/checkpoints/ (Lightning's place), found there.

One fit at a time writes a run folder: a new run claims its version_N by making the
folder (two runs started at once never share one), and holds a lock on it (version_N/.lock)
until the process ends, however it ends; a second fit resuming the same run is refused.

Plain Python, no Lightning.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpt.interop.checkpoint import run_folders, version_number

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None

LOCK = ".lock"
SAVE_DIR = "lightning_logs"  # main.py's logger writes here, under trainer.default_root_dir if one is given
RUN_LOGGERS = ("TensorBoardLogger", "RunLogger", "CSVLogger")  # those that write SAVE_DIR/NAME/version_N


class RunInUse(OSError):
    """Another process is writing to this run folder."""


def run_of(checkpoint: Path, experiment: Path) -> int | None:
    """The version N when the checkpoint lies in experiment/version_N/checkpoints/, else None:
    a fit resumed from it carries on in that folder."""
    folder = checkpoint.resolve().parent.parent
    if checkpoint.resolve().parent.name != "checkpoints" or folder.parent != experiment.resolve():
        return None
    return version_number(folder)


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
def new_run(experiment: Path, trained: Callable[[], bool] = lambda: True) -> Iterator[int]:
    """Claim the experiment's next version N and hold its folder. A run that fails before it
    trained a step (trained() says) leaves no folder behind, whatever setup wrote in it (its
    config, an empty TensorBoard file); nor do the folders made for it."""
    made = [p for p in (experiment, *experiment.parents) if not p.exists()]  # deepest first
    version = claim_new_run(experiment)
    folder = experiment / f"version_{version}"
    try:
        with hold_run(folder):
            try:
                yield version
            except BaseException:
                if not trained():
                    for path in folder.iterdir():  # all but the lock, held until hold_run ends
                        if path.is_dir():
                            shutil.rmtree(path)
                        elif path.name != LOCK:
                            path.unlink()
                raise
    finally:
        for folder in made:
            with contextlib.suppress(OSError):  # not empty: the run wrote to it
                folder.rmdir()


def run_loggers(config: Any) -> list[Any]:
    """The sections of a parsed config's loggers that write SAVE_DIR/NAME/version_N folders."""
    logger = config.trainer.logger
    loggers = logger if isinstance(logger, list) else [logger]
    return [x for x in loggers if str(getattr(x, "class_path", "")).endswith(RUN_LOGGERS)]


def run_logger(config: Any) -> Any:
    """The section of the first logger when it writes run folders (Lightning keeps the
    checkpoints in the first logger's version_N), else None (another logger, or none)."""
    logger = config.trainer.logger
    first = logger[0] if isinstance(logger, list) and logger else logger
    return first if any(first is x for x in run_loggers(config)) else None


def tensorboard_section(config: Any) -> Any:
    """The run logger's section when it is TensorBoard's: a resumed run carries on in its
    folder (a CSVLogger would empty the folder's metrics.csv: it starts the next version)."""
    logger = run_logger(config)
    return logger if logger is not None and not logger.class_path.endswith("CSVLogger") else None


def experiment_dir(config: Any) -> Path:
    """The folder `--ckpt_path last` looks in: lightning_logs/<config name> (its version_N
    runs), or without a run logger default_root_dir (whose checkpoints/ Lightning writes)."""
    logger, root = run_logger(config), Path(config.trainer.default_root_dir or ".")
    if config.trainer.logger is True:  # Lightning's own TensorBoardLogger: default_root_dir/lightning_logs
        return root / SAVE_DIR
    if logger is None:
        return root
    return Path(logger.init_args.save_dir) / (logger.init_args.name or "")


def place_run(config: Any) -> None:
    """Where a parsed config's run goes: its loggers' folders named after the config file
    (unless named), and main.py's lightning_logs/ under trainer.default_root_dir when one
    is given, as Lightning puts its own logger's."""
    root = config.trainer.default_root_dir
    for logger in run_loggers(config):
        if not logger.init_args.get("name"):
            logger.init_args.name = run_name(config)
        if root and logger.init_args.save_dir == SAVE_DIR:
            logger.init_args.save_dir = str(Path(root) / SAVE_DIR)


def hold_run_folder(config: Any, held: contextlib.ExitStack, trained: Callable[[], bool]) -> None:
    """Claim a fit's version_N folder (a new run) or lock it (a resumed one) until `held`
    closes: one process writes a run at a time. A new run that fails before trained() is
    true leaves no folder."""
    logger = run_logger(config)
    if logger is None:
        return
    experiment, version = experiment_dir(config), logger.init_args.version
    if version is None:
        logger.init_args.version = held.enter_context(new_run(experiment, trained))
    else:  # resuming (or a version given): the run's own folder
        folder = version if isinstance(version, str) else f"version_{version}"
        held.enter_context(hold_run(experiment / folder))


def unpin_run_folder(config: Any) -> None:
    """Once the logger is made: the version_N this process took is no setting, so the run's
    config.yaml says version null, as Lightning's does (a fit started again from that file gets
    a new folder rather than writing over the run's)."""
    for logger in run_loggers(config):
        logger.init_args.version = None
        if "purge_step" in logger.init_args:
            logger.init_args.purge_step = None


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


def config_of(name: str) -> Path | None:
    """The config file whose runs go to lightning_logs/NAME (run_name's inverse: configs/X.yaml
    for X, configs/a/b.yaml for a_b), in the working folder's configs/, else None."""
    configs = Path("configs")
    return next((c for c in sorted(configs.rglob("*.yaml")) if "_".join(c.with_suffix("").parts[1:]) == name), None)


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
