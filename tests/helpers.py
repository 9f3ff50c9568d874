"""What several test files share: small corpora, Tiny Shakespeare, running the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A small corpus with the shape of a play: speakers, lines, blank lines (about 6,000
# characters: enough for a few hundred windows of 32 tokens).
_LINES = [
    "First Citizen:", "Before we proceed any further, hear me speak.", "",
    "All:", "Speak, speak.", "",
    "First Citizen:", "You are all resolved rather to die than to famish?", "",
    "All:", "Resolved. resolved.", "",
    "MENENIUS:", "What work's, my countrymen, in hand? where go you", "With bats and clubs?", "",
]  # fmt: skip
LINES_TEXT = "\n".join(_LINES * 20)

# Sixty short speeches separated by blank lines: examples of natural length.
SPEECHES_TEXT = (
    "\n\n".join(f"CITIZEN {i}:\n" + "Speak, speak. " * (1 + i % 4) + "\nWe are resolved." for i in range(60)) + "\n"
)


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


def run_main(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python main.py ARGS` the way a user does, in `cwd`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("GPT_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def assert_clean_error(result: subprocess.CompletedProcess, message: str) -> None:
    """The command failed with one `error:` line that holds message, and no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
