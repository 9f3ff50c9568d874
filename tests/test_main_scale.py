"""main.py at scale, on a CPU: a corpus of documents tokenized into shards, tokens_per_step and
gradient accumulation, DDP that trains the same model as one process, validation scored once."""

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gpt.data.corpus import Corpus
from gpt.data.datasets import EvalWindows
from helpers import LINES_TEXT, QUIET, ROOT, TINY_MODEL, assert_clean_error, main_here, run_main, scalars

pytestmark = pytest.mark.slow  # DDP, accumulation, shards written by worker processes

DDP = "--trainer.strategy ddp --trainer.devices 2 --trainer.accelerator cpu".split()


def parquet_corpus(folder, text: str, files: int = 3):
    """`text`'s paragraphs as the documents of a folder of parquet files."""
    docs = [p.strip() + "\n" for p in re.split(r"\n\s*\n", text) if p.strip()]
    folder.mkdir(parents=True)
    for i in range(files):
        part = docs[i * len(docs) // files : (i + 1) * len(docs) // files]
        pq.write_table(pa.table({"text": part}), folder / f"part-{i}.parquet")
    return folder


def fit(corpus, data_dir, steps: int, *extra: str) -> list[str]:
    schedule = f"--model.warmup_steps 2 --trainer.max_steps {steps} --trainer.val_check_interval {steps}"
    return ["fit", *TINY_MODEL, *QUIET, "--seed_everything", "1", *schedule.split(), "--data.corpus", str(corpus),
            "--data.data_dir", str(data_dir), *extra]  # fmt: skip


def last_checkpoint(folder) -> dict:
    return torch.load(folder / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)


def test_ddp_and_accumulation_train_the_same_model_as_one_process(tmp_path):
    """The same global batch of 16 windows a step, four ways: one process, two DDP ranks of 8,
    one process accumulating 2 x 8, two ranks accumulating 2 x 4 each. Same windows in each
    step, same gradient: the same model, and validation scores each window once on 2 ranks."""
    corpus = tmp_path / "lines.txt"
    corpus.write_text(LINES_TEXT * 3)
    runs = {
        "one": "--data.batch_size 16",
        "ddp": "--data.batch_size 8 " + " ".join(DDP),
        "accumulated": "--data.batch_size 8 --data.tokens_per_step 512",  # 16 x 32 tokens
        "ddp accumulated": "--data.batch_size 4 --data.tokens_per_step 512 " + " ".join(DDP),
    }
    val_loss, weights = {}, {}
    for name, extra in runs.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        run = run_main if "ddp" in name else main_here  # DDP starts processes; the rest runs here
        result = run(*fit(corpus, tmp_path / "data", 8, *extra.split()), cwd=folder)
        assert result.returncode == 0, result.stderr[-3000:]
        checkpoint = last_checkpoint(folder)
        assert checkpoint["global_step"] == 8
        weights[name] = checkpoint["state_dict"]
        val_loss[name] = scalars(folder / "lightning_logs/version_0", "val/loss")[-1][1]
    assert "tokens per step: 512 = 2 devices x 4 sequences x 32 tokens x 2 micro-batches accumulated" in result.stderr
    assert val_loss["one"] < 3.8  # it learned (untrained: about ln 60 = 4.1), so equal losses say something
    for name in ("ddp", "accumulated", "ddp accumulated"):
        assert val_loss[name] == pytest.approx(val_loss["one"], abs=1e-5), name
        for key, value in weights["one"].items():
            assert torch.allclose(weights[name][key], value, atol=1e-5), (name, key)

    # Validation on two ranks: each of an odd number of windows scored once, the same loss.
    n_windows = len(EvalWindows(np.zeros(int(len(LINES_TEXT * 3) * 0.1) + 1), 32))
    ckpt = str(tmp_path / "one/lightning_logs/version_0/checkpoints/last.ckpt")
    losses = []
    for extra in ([], DDP):
        args = ["validate", *QUIET, "--data.corpus", str(corpus), "--data.data_dir", str(tmp_path / "data")]
        result = (run_main if extra else main_here)(*args, "--ckpt_path", ckpt, *extra, cwd=tmp_path / "one")
        assert result.returncode == 0, result.stderr[-3000:]
        losses.append(float(re.search(r"val/loss\s*│\s*([\d.]+)", result.stdout).group(1)))
    assert n_windows % 2 == 1  # the ranks' shares differ: DistributedSampler would repeat one
    assert losses[1] == pytest.approx(losses[0], abs=1e-6)


def test_tokens_per_step_that_does_not_divide_is_one_error_line(small_corpus, tmp_path):
    args = fit(small_corpus, tmp_path / "data", 2, "--data.batch_size", "8", "--data.tokens_per_step", "1000")
    result = main_here(*args, cwd=tmp_path)
    assert_clean_error(result, "error: data.tokens_per_step 1,000 is not a multiple of the tokens one micro-batch")
    assert "--data.tokens_per_step 1024" in result.stderr
    both = fit(small_corpus, tmp_path / "data", 2, "--data.batch_size", "8", "--data.tokens_per_step", "512")
    result = main_here(*both, "--trainer.accumulate_grad_batches", "3", cwd=tmp_path)
    assert_clean_error(result, "means accumulating 2 micro-batches, but trainer.accumulate_grad_batches is 3")


def test_a_parquet_corpus_end_to_end(shakespeare, tmp_path):
    """Parquet files -> shards by 2 workers -> windows -> 2 micro-batches a step -> a checkpoint
    that samples without the corpus."""
    corpus = parquet_corpus(tmp_path / "parquet", shakespeare.read_text()[:60_000])
    shards = "--data.shard_tokens 20000 --data.val_tokens 5000 --data.tokenize_workers 2"
    args = fit(corpus, tmp_path / "data", 4, *shards.split(), "--data.batch_size", "4", "--data.tokens_per_step", "256")
    result = main_here(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tokens per step: 256 = 1 device x 4 sequences x 32 tokens x 2 micro-batches" in result.stderr
    (folder,) = (tmp_path / "data" / "shards").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"][:2]] == ["val_000000.bin", "train_000001.bin"]
    assert manifest["complete"] and manifest["shards"][0]["tokens"] == 5000
    assert sum(s["tokens"] for s in manifest["shards"]) > 60_000  # every character, and <|endoftext|>s
    assert [step for step, _ in scalars(tmp_path / "lightning_logs/version_0", "val/loss")] == [3]
    assert last_checkpoint(tmp_path)["global_step"] == 4
    sample = ["predict", "--ckpt_path", "last", "--data.prompt", "ROMEO:", "--model.sampling.max_new_tokens", "20"]
    predicted = main_here(*sample, "--data.corpus", "nowhere", *TINY_MODEL[:8], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert predicted.stdout.startswith("ROMEO:")
    # Too little left for training after the validation tokens: one error line.
    result = main_here(*fit(corpus, tmp_path / "data", 2, "--data.val_tokens", "100000"), cwd=tmp_path)
    assert_clean_error(result, "too few left for one training window")


def test_tokenization_killed_outright_carries_on_to_the_same_shards(shakespeare, tmp_path):
    corpus = parquet_corpus(tmp_path / "parquet", shakespeare.read_text()[:150_000])
    sizes = "--data.shard_tokens 500 --data.val_tokens 500".split()  # 300 shards: time to kill it halfway
    # The reference: the same shards written without a stop, by the library.
    reference = Corpus(str(corpus), tmp_path / "reference")
    from gpt.tokenizers.settings import CharSettings

    tokenizer = reference.tokenizer(CharSettings())
    expected = reference.write_shards(tokenizer, 500, 500, workers=1)
    args = [sys.executable, str(ROOT / "main.py"), *fit(corpus, tmp_path / "data", 2, *sizes)]
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = None
    for _ in range(6000):
        manifests = list((tmp_path / "data").glob("shards/*/manifest.json"))
        if manifests and len(json.loads(manifests[0].read_text())["shards"]) >= 20:
            process.send_signal(signal.SIGKILL)
            manifest = manifests[0]
            break
        time.sleep(0.005)
    assert process.wait(timeout=60) == -signal.SIGKILL
    written = json.loads(manifest.read_text())
    assert not written["complete"] and 20 <= len(written["shards"]) < 300
    rerun = main_here(*fit(corpus, tmp_path / "data", 2, *sizes), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"Carrying on from {len(written['shards'])} finished shards" in rerun.stderr
    assert not list(manifest.parent.glob(".*.tmp"))  # the killed run's unfinished shard, cleared
    files = sorted(p.name for p in expected.iterdir())
    assert files == sorted(p.name for p in manifest.parent.iterdir())
    for name in files:
        assert (expected / name).read_bytes() == (manifest.parent / name).read_bytes(), name


def test_a_jsonl_file_on_the_command_line_and_a_hub_dataset_offline(tmp_path):
    """--data.corpus FILE.jsonl is the file (never its contents read as a setting), and a hub
    dataset that cannot be reached is one error line."""
    corpus = tmp_path / "one.jsonl"
    corpus.write_text("".join(f'{{"text": "speech {i}: " }}\n' for i in range(300)))
    result = main_here(*fit(corpus, tmp_path / "data", 2, "--data.val_tokens", "600"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "data" / "shards").iterdir()
    assert folder.name.startswith("one-")
    hub = "--data.hub.path HuggingFaceFW/fineweb --data.hub.name sample-10BT".split()
    result = main_here(*fit(corpus, tmp_path / "data", 2), *hub, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert_clean_error(result, "could not open the hub dataset 'HuggingFaceFW/fineweb' (name 'sample-10BT'")
