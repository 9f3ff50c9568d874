import os
from pathlib import Path

import pytest

from helpers import LINES_TEXT, ROOT, shakespeare_file

# tiktoken's encodings without the network: CI sets TIKTOKEN_CACHE_DIR to ../shared's
# cache; a developer's checkout beside shared/ gets the same by default.
_SHARED_TIKTOKEN = ROOT.parent / "shared" / "tiktoken-cache"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _SHARED_TIKTOKEN.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_SHARED_TIKTOKEN)


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """LINES_TEXT in a file: about 6,000 characters."""
    path = tmp_path / "small.txt"
    path.write_text(LINES_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def shakespeare() -> Path:
    return shakespeare_file()
