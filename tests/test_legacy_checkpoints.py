"""Checkpoints written before the restructure (tests/fixtures/legacy, made at commit 620a13a)
still predict, validate and export to the numbers that code gave."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

from helpers import FIXTURES, LINES_TEXT, ROOT, SPEECHES_TEXT, main_here, predict

LEGACY = FIXTURES / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
CORPUS = {"char_gpt2": LINES_TEXT, "char_blocks": LINES_TEXT, "bpe_masked": SPEECHES_TEXT}


@pytest.fixture
def workdir(tmp_path):
    """A fresh folder holding copies of the checkpoints and their corpora."""
    for name, text in CORPUS.items():
        shutil.copy(LEGACY / f"{name}.ckpt", tmp_path)
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    return tmp_path


def predict_text(workdir, name: str, *args: str) -> str:
    result = predict(f"{name}.ckpt", workdir, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow  # several processes
def test_predict_gives_the_same_text(workdir):
    greedy = ["--model.sampling.temperature", "0", "--model.sampling.max_new_tokens", "60", "--data.prompt", "First"]
    assert predict_text(workdir, "char_gpt2", *greedy) == EXPECTED["char_gpt2"]["greedy"]
    assert predict_text(workdir, "char_blocks", *greedy) == EXPECTED["char_blocks"]["greedy"]
    seeded = "--data.prompt All: --model.sampling.temperature 0.8 --model.sampling.top_k 10 --model.sampling.seed 3"
    sampled = predict_text(
        workdir, "char_gpt2", *seeded.split(), *"--model.sampling.max_new_tokens 60 --data.num_samples 2".split()
    )
    assert sampled == EXPECTED["char_gpt2"]["sampled"]
    prompt = "CITIZEN 3:\\nSpe<|mask|>k, speak. \\nWe are res<|mask|>ved."
    filled = predict_text(workdir, "bpe_masked", "--data.prompt", prompt, "--model.sampling.top_k", "3")
    assert filled == EXPECTED["bpe_masked"]["fill"]


@pytest.mark.parametrize("name", ["char_gpt2", "char_blocks", "bpe_masked"])
def test_validate_gives_the_same_metrics(workdir, name):
    mode = ["--data.mode", "paragraphs"] if name == "bpe_masked" else []
    data = ["--data.corpus", f"{name}.txt", *mode, "--trainer.enable_progress_bar", "false"]
    result = main_here("validate", "--ckpt_path", f"{name}.ckpt", *data, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = {m[0]: float(m[1]) for m in re.findall(r"(val/\w+)\W+([\d.]+)", result.stdout)}
    assert printed == pytest.approx(EXPECTED[name]["validate"], rel=1e-6)


def test_export_to_hugging_face_keeps_the_logits(workdir):
    transformers = pytest.importorskip("transformers")
    export = subprocess.run(
        [sys.executable, "-m", "gpt.interop.hf", str(workdir / "char_gpt2.ckpt"), str(workdir / "hf")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    model = transformers.GPT2LMHeadModel.from_pretrained(workdir / "hf").eval()
    with torch.no_grad():
        logits = model(torch.arange(12)[None]).logits
    expected = EXPECTED["char_gpt2"]
    assert logits[0, -1, :8].tolist() == pytest.approx(expected["logits_last_row"], abs=1e-5)
    assert logits.sum().item() == pytest.approx(expected["logits_sum"], abs=1e-2)
