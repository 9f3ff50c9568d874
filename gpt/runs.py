"""Where runs live, and finding their checkpoints again.

A run of `python main.py fit --config configs/X.yaml` writes to
lightning_logs/X/version_N/ (TensorBoard events, config.yaml, hparams.yaml) and its
checkpoints to lightning_logs/X/version_N/checkpoints/: last.ckpt (the latest step) and
the one with the best validation loss. Each new run gets the next version_N, so runs
compare side by side in TensorBoard; a resumed run carries on in its own folder.

    --ckpt_path last    the newest last.ckpt of this experiment (the highest version_N that has one)
    --ckpt_path best    the best checkpoint of that same run

Plain Python, no Lightning.
"""

from __future__ import annotations

import re
from pathlib import Path

LAST = "last.ckpt"


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
        if (folder / "checkpoints" / LAST).is_file():
            return folder / "checkpoints" / LAST
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
