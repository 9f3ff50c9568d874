import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# tiktoken's encodings without the network: CI sets TIKTOKEN_CACHE_DIR to ../shared's
# cache; a developer's checkout beside shared/ gets the same by default.
_SHARED_TIKTOKEN = ROOT.parent / "shared" / "tiktoken-cache"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _SHARED_TIKTOKEN.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_SHARED_TIKTOKEN)

# A small corpus with the shape of a play: speakers, lines, blank lines.
_LINES = [
    "First Citizen:", "Before we proceed any further, hear me speak.", "",
    "All:", "Speak, speak.", "",
    "First Citizen:", "You are all resolved rather to die than to famish?", "",
    "All:", "Resolved. resolved.", "",
    "MENENIUS:", "What work's, my countrymen, in hand? where go you", "With bats and clubs?", "",
]  # fmt: skip


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """About 6,000 characters: enough for a few hundred windows of 32 tokens."""
    path = tmp_path / "small.txt"
    path.write_text("\n".join(_LINES * 20), encoding="utf-8")
    return path


def shakespeare_file() -> Path:
    """Tiny Shakespeare without the network: $TINY_SHAKESPEARE, data/, or ../shared."""
    candidates = [
        os.environ.get("TINY_SHAKESPEARE", ""),
        ROOT / "data" / "tinyshakespeare" / "input.txt",
        ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    pytest.skip("Tiny Shakespeare is not on this machine; set TINY_SHAKESPEARE=/path/to/input.txt")


@pytest.fixture
def shakespeare() -> Path:
    return shakespeare_file()


def run_main(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python main.py ARGS` the way a user does, in `cwd`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("GPT_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
