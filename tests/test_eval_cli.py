"""python -m gpt.eval as a user runs it: a run folder's checkpoint scored on two tasks, the table,
the JSON with the checkpoint's identity; and every mistake a user can make is one `error:` line,
a non-zero exit and no file written."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from gpt.eval.tasks.files import sha256_of
from gpt.model.models import GPT
from gpt.tokenizers import CharTokenizer, TiktokenTokenizer
from helpers import assert_clean_error, eval_data, shakespeare_file, tiny_config, write_checkpoint

pytestmark = pytest.mark.slow  # each test starts the command


def evaluate(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpt.eval", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A run folder of a GPT-2-tokenizer model, and a checkpoint with Tiny Shakespeare's characters."""
    tmp = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    gpt2 = TiktokenTokenizer("gpt2")
    run = tmp / "lightning_logs" / "tiny" / "version_0"
    write_checkpoint(run / "checkpoints" / "last.ckpt", GPT(tiny_config(vocab_size=gpt2.vocab_size)), gpt2, step=12)
    chars = CharTokenizer.from_text(shakespeare_file().read_text())
    char_ckpt = write_checkpoint(tmp / "char.ckpt", GPT(tiny_config(vocab_size=chars.vocab_size)), chars)
    return run, char_ckpt


def test_a_run_folder_is_scored_with_a_table_and_a_json_of_results(checkpoints, tmp_path):
    run, _ = checkpoints
    result = evaluate(str(run), "--tasks", "lambada,piqa", "--limit", "3", "--data_dir", str(eval_data()), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["task", "metric", "value", "stderr", "n", "shots", "cut", "prompt"]
    assert rows[1].split()[:2] == ["lambada", "acc"] and rows[1].split()[4:] == ["3", "0", "3", "plain"]
    assert rows[2].split()[0] == "perplexity" and rows[3].split()[:2] == ["piqa", "acc"]
    assert "100%" in result.stderr and "6/6" in result.stderr  # the progress bar, over both tasks' items
    written = tmp_path / "evals" / "tiny-version_0-last.json"
    assert rows[-1] == f"wrote {written.relative_to(tmp_path)}"
    report = json.loads(written.read_text())
    ckpt = run / "checkpoints" / "last.ckpt"
    assert report["checkpoint"]["path"] == str(ckpt) and report["checkpoint"]["sha256"] == sha256_of(ckpt)
    assert report["checkpoint"]["step"] == 12 and report["checkpoint"]["model_config"]["n_embd"] == 32
    piqa = report["tasks"]["piqa"]
    assert (piqa["n"], piqa["shots"], piqa["truncated"], piqa["settings"]["prompt"]) == (3, 0, 2, "plain")  # context 16
    assert set(piqa["metrics"]) == {"acc", "acc_norm"} and 0 < piqa["metrics"]["acc"]["stderr"] < 1
    assert report["tasks"]["lambada"]["metrics"]["perplexity"]["value"] > 1
    assert report["run"]["limit"] == 3 and "items" not in piqa


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("unknown task", ["--tasks", "lambada,pika"], "unknown task 'pika'; did you mean 'piqa'?"),
        (
            "no data",
            ["--tasks", "piqa", "--data_dir", "{tmp}/empty"],
            "the piqa data (piqa/valid.jsonl, piqa/valid-labels.lst) is not in",
        ),
        ("damaged data", ["--tasks", "piqa", "--data_dir", "{tmp}/damaged"], "valid-labels.lst has sha256"),
        ("a character vocabulary", ["--tasks", "mmlu", "--limit", "1"], "cannot be encoded by the model's tokenizer"),
        ("limit 0", ["--limit", "0"], "--limit must be at least 1 (or left out for every item), got 0"),
        ("not a model", ["--tasks", "piqa"], "is not a PyTorch checkpoint"),
    ],
)
def test_a_mistake_is_one_error_line_and_writes_nothing(checkpoints, tmp_path, case, args, message):
    run, char_ckpt = checkpoints
    ckpt = {"a character vocabulary": char_ckpt, "not a model": tmp_path / "notes.ckpt"}.get(case, run)
    (tmp_path / "notes.ckpt").write_text("not a model")
    shutil.copytree(eval_data() / "piqa", tmp_path / "damaged" / "piqa")
    with open(tmp_path / "damaged" / "piqa" / "valid-labels.lst", "a") as f:
        f.write("1\n")
    args = [a.format(tmp=tmp_path) for a in args]
    result = evaluate(
        str(ckpt), *args, *(["--data_dir", str(eval_data())] if "--data_dir" not in args else []), cwd=tmp_path
    )
    assert_clean_error(result, message)
    assert len(result.stderr.strip().splitlines()) == 2  # the error and the hint about GPT_TRACEBACK
    assert not (tmp_path / "evals").exists()
