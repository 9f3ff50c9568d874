"""Downloads: Tiny Shakespeare and the assistant recipe's instruction files (md5-checked), and any
file the project fetches once (HellaSwag); offline, an error that says where to put the file instead."""

from __future__ import annotations

import hashlib
import logging
import urllib.request
from pathlib import Path

from gpt.files import write_bytes

log = logging.getLogger(__name__)

# Tiny Shakespeare, as Karpathy's char-rnn repository serves it.
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SIZE = 1_115_394
SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"

# The assistant recipe's instruction files (configs/assistant/*_cpu.yaml), by the names the configs
# give them: the 1,100 instructions of Raschka's "Build a Large Language Model (From Scratch)",
# chapter 7, and the same with a chosen and a rejected reply. (url, md5 of the published bytes)
RASCHKA_CH07 = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07"
RECIPE_INSTRUCTIONS = {
    "alpaca-1100.json": (
        f"{RASCHKA_CH07}/01_main-chapter-code/instruction-data.json",
        "2bdd7e1e6893fb2a365efbc8016d936e",
    ),
    "preference-1100.json": (
        f"{RASCHKA_CH07}/04_preference-tuning-with-dpo/instruction-data-with-preference.json",
        "fd0bb356c59f99c5b6c2d83c24e759cc",
    ),
}


def fetch(url: str, what: str, path: Path, option: str) -> bytes:
    """The bytes at `url`, meant for `path`; offline, an error that says where the file can go
    instead, or which option names one."""
    log.info(f"Downloading {what} from {url} to {path}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except OSError as e:
        raise FileNotFoundError(
            f"could not download {what} from {url} ({e}); without internet, put the file at {path} or pass its "
            f"path with {option} PATH"
        ) from None


def download_shakespeare(path: Path, url: str = SHAKESPEARE_URL) -> Path:
    """Download Tiny Shakespeare to `path`, check its size and md5, write it atomically."""
    data = fetch(url, "Tiny Shakespeare", path, "--data.corpus")
    md5 = hashlib.md5(data).hexdigest()
    if len(data) != SHAKESPEARE_SIZE or md5 != SHAKESPEARE_MD5:
        raise ValueError(
            f"downloaded Tiny Shakespeare is {len(data)} bytes with md5 {md5}; expected "
            f"{SHAKESPEARE_SIZE} bytes with md5 {SHAKESPEARE_MD5}. Nothing was written."
        )
    write_bytes(path, data)
    return path


def download_recipe_instructions(path: Path) -> Path:
    """Download the recipe's instruction file of path's name (RECIPE_INSTRUCTIONS) to `path`,
    check its md5, write it atomically."""
    url, expected = RECIPE_INSTRUCTIONS[path.name]
    data = fetch(url, f"the assistant recipe's {path.name}", path, "--data.instructions.path")
    md5 = hashlib.md5(data).hexdigest()
    if md5 != expected:
        raise ValueError(f"downloaded {path.name} has md5 {md5}; expected {expected}. Nothing was written.")
    write_bytes(path, data)
    return path
