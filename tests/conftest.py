import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from helpers import LINES_TEXT, ROOT, fit_args, main_here, shakespeare_file

# tiktoken's encodings without the network: CI sets TIKTOKEN_CACHE_DIR to ../shared's
# cache; a developer's checkout beside shared/ gets the same by default.
_SHARED_TIKTOKEN = ROOT.parent / "shared" / "tiktoken-cache"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _SHARED_TIKTOKEN.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_SHARED_TIKTOKEN)

# pytest -n N runs N workers, one a core: each worker's torch, and every process a test starts
# (OMP_NUM_THREADS), gets its share of the cores. Otherwise two workers on two cores run two
# OpenMP threads each, which spin against each other: the fits took 2.5x the time, and a test's
# speed depended on whether an earlier test in its worker (the server) had set one thread.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Property tests draw the same examples in every run (CI passes or fails for the code, not
# the draw); HYPOTHESIS_PROFILE=explore draws new ones, as when hunting for bugs.
settings.register_profile("seeded", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "seeded"))


def pytest_collection_modifyitems(items):
    """The slow tests first: in parallel runs the long ones start at once rather than last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """LINES_TEXT in a file: about 6,000 characters."""
    path = tmp_path / "small.txt"
    path.write_text(LINES_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def shakespeare() -> Path:
    return shakespeare_file()


# Two short CLI fits, shared by the command-line tests: a tiny GPT on a small play with
# characters, and with a 300-token BPE. Each gives (run folder, last.ckpt, workdir, corpus).
_PLAY = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 60


def _fit(workdir: Path, *extra: str) -> tuple[Path, Path, Path, Path]:
    corpus = workdir / "corpus.txt"
    corpus.write_text(_PLAY)
    result = main_here(*fit_args(corpus, workdir / "data"), *extra, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = workdir / "lightning_logs" / "version_0"
    return run_dir, run_dir / "checkpoints" / "last.ckpt", workdir, corpus


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("fit"))


@pytest.fixture(scope="session")
def trained_bpe(tmp_path_factory):
    return _fit(
        tmp_path_factory.mktemp("fit_bpe"), "--data.tokenizer.kind", "bpe", "--data.tokenizer.vocab_size", "300"
    )
