"""HellaSwag scoring: the sums are the model's log-probabilities (against a token-by-token
loop and a hand-set table), padding changes nothing, acc and acc_norm are the two rules,
bad files are named by line; the command line and the callback on a tiny fit."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt.eval.hellaswag import evaluate, read_items, score_item, score_rows
from gpt.model.models import GPT, BigramLM
from gpt.tokenizers import CharTokenizer
from helpers import ROOT, assert_clean_error, fit_args, main_here, scalars, tiny_config, write_jsonl

# The characters of the corpus the fit below trains on; b for the hand-set model.
PLAY = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 60
TOKENIZER = CharTokenizer.from_text(PLAY + "b")

# Endings of different lengths, so that the batch is padded; the last item's context is
# longer than a context of 16, so it is cut.
ITEMS = [
    {"ctx": "All: speak", "endings": ["speak.", "a", "we proceed any further", "hear me"], "label": 0},
    {"ctx": "First Citizen:", "endings": ["Before", "we", "speak. speak. speak.", "All"], "label": 2},
    {"ctx": "Before we proceed any further, hear me speak", "endings": [".", "All:", "a", "cc"], "label": 1},
]


def random_gpt(block_size: int = 16) -> GPT:
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=TOKENIZER.vocab_size, block_size=block_size)).eval()
    with torch.no_grad():  # larger weights than GPT-2's init: log-probs far from uniform
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def reference_scores(model, item: dict, block_size: int) -> tuple[list[float], list[float]]:
    """Each ending token's log-probability from its own forward pass over the tokens before
    it. The window starts where score_rows cuts (the last block_size + 1 tokens of the row),
    so an ending longer than that has its first tokens left out."""
    ctx = TOKENIZER.encode(item["ctx"])
    totals, means = [], []
    for ending in item["endings"]:
        row = ctx + TOKENIZER.encode(" " + ending)
        start = max(0, len(row) - block_size - 1)
        positions = range(max(len(ctx), start + 1), len(row))
        total = 0.0
        for p in positions:
            logits = model(torch.tensor([row[start:p]]))[0, -1].double()
            total += torch.log_softmax(logits, dim=-1)[row[p]].item()
        totals.append(total)
        means.append(total / len(positions))
    return totals, means


@torch.no_grad()
def test_scores_are_the_summed_log_probabilities_of_each_ending():
    model = random_gpt()
    for item in ITEMS:
        total, mean = score_item(model, TOKENIZER, item)
        want_total, want_mean = reference_scores(model, item, block_size=16)
        assert total.tolist() == pytest.approx(want_total, abs=1e-4)
        assert mean.tolist() == pytest.approx(want_mean, abs=1e-5)
        assert total.std() > 1.0  # the endings score apart: the comparison has teeth


@torch.no_grad()
def test_padding_does_not_change_the_scores():
    model = random_gpt(block_size=64)  # no cut: the rows differ only in length
    ctx = TOKENIZER.encode(ITEMS[1]["ctx"])
    rows = [(ctx, TOKENIZER.encode(" " + e)) for e in ITEMS[1]["endings"]]
    together, together_mean = score_rows(model, rows, "cpu")
    for i, row in enumerate(rows):
        alone, alone_mean = score_rows(model, [row], "cpu")
        assert abs(alone.item() - together[i].item()) <= 1e-5
        assert abs(alone_mean.item() - together_mean[i].item()) <= 1e-5


def unigram_model(probs: dict[str, float]) -> BigramLM:
    """A bigram model whose every row gives these probabilities (the rest shared evenly):
    an ending's log-probability is the sum of its characters' logs."""
    rest = (1 - sum(probs.values())) / (TOKENIZER.vocab_size - len(probs))
    row = torch.full((TOKENIZER.vocab_size,), rest)
    for ch, p in probs.items():
        row[TOKENIZER.encode(ch)[0]] = p
    model = BigramLM(tiny_config(arch="bigram", vocab_size=TOKENIZER.vocab_size, block_size=32))
    with torch.no_grad():
        model.table.weight.copy_(row.log().expand(TOKENIZER.vocab_size, -1))
    return model


def test_acc_sums_and_acc_norm_averages_per_token():
    model = unigram_model({"a": 0.6, " ": 0.2, "b": 0.1})
    # " a": log .2 + log .6 = -2.12 in all, -1.06 a token; " aaaa": -3.65 in all, -0.73 a token.
    # The sum prefers the short ending, the mean the long one: the label is the long one.
    item = {"ctx": "c", "endings": ["b", "a", "bb", "aaaa"], "label": 3}
    total, mean = score_item(model, TOKENIZER, item)
    want = [math.log(0.2) + n * math.log(p) for n, p in ((1, 0.1), (1, 0.6), (2, 0.1), (4, 0.6))]
    assert total.tolist() == pytest.approx(want, abs=1e-5)
    assert mean.tolist() == pytest.approx([w / (n + 1) for w, n in zip(want, (1, 1, 2, 4))], abs=1e-5)
    assert evaluate(model, TOKENIZER, [item]) == {"acc": 0.0, "acc_norm": 1.0, "n": 1}
    # An item where the favoured ending wins both ways, and one it loses both ways.
    right = {"ctx": "c", "endings": ["b", "bb", "a", "bbb"], "label": 2}
    wrong = {**right, "label": 0}
    assert evaluate(model, TOKENIZER, [item, right, wrong, right]) == {"acc": 0.5, "acc_norm": 0.75, "n": 4}


def test_read_items_and_limit(tmp_path):
    path = write_jsonl(tmp_path / "h.jsonl", ITEMS)
    assert read_items(path) == ITEMS
    assert read_items(path, limit=2) == ITEMS[:2]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2: not JSON"),
        ('{"ctx": "a", "endings": ["a", "b", "c", "d"]}', "line 2: no label (the test split's labels are hidden"),
        ('{"ctx": "a", "endings": ["a", "b", "c"], "label": 0}', "line 2: endings must be a list of 4 strings"),
        ('{"ctx": "a", "endings": ["a", "b", "c", "d"], "label": 4}', "line 2: label must be 0, 1, 2 or 3, got 4"),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_a_bad_line_is_named(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ITEMS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}, {message}")):
        read_items(path)


def test_unknown_characters_and_masked_models_are_refused():
    with pytest.raises(ValueError, match=r"cannot be encoded: character '\[' .* BPE or tiktoken tokenizer"):
        score_item(random_gpt(), TOKENIZER, {**ITEMS[0], "ctx": "[header] speak"})
    masked = GPT(tiny_config(vocab_size=TOKENIZER.vocab_size, causal=False))
    with pytest.raises(ValueError, match="masked language model"):
        evaluate(masked, TOKENIZER, ITEMS)


# ---- a tiny fit with the callback, then the command line on its checkpoint


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Two steps of a tiny char model, scoring the items after its last step."""
    workdir = tmp_path_factory.mktemp("hellaswag")
    (workdir / "corpus.txt").write_text(PLAY)
    data = write_jsonl(workdir / "h.jsonl", ITEMS)
    callback = ["--trainer.callbacks+=gpt.train.eval_callbacks.HellaSwagEval", "--trainer.callbacks.path", str(data)]
    result = main_here(*fit_args(workdir / "corpus.txt", workdir / "data", steps=2), *callback, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "lightning_logs" / "version_0", data


def hellaswag_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GPT_TRACEBACK"}
    cmd = [sys.executable, "-m", "gpt.eval.hellaswag", *args]
    return subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)


def test_the_callback_logs_hellaswag_after_validation(fitted):
    run_dir, _ = fitted
    (step, acc), *more = scalars(run_dir, "val/hellaswag_acc")
    assert not more and step == 1  # once, after the last step (not in the sanity check), where val/loss is
    assert [s for s, _ in scalars(run_dir, "val/loss")] == [1]
    assert min(abs(acc * 3 - k) for k in range(4)) < 1e-4  # a count out of the 3 items
    assert len(scalars(run_dir, "val/hellaswag_acc_norm")) == 1


def test_the_command_line_prints_and_logs_the_same_accuracy(fitted):
    run_dir, data = fitted
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = hellaswag_cli(str(ckpt), "--data", str(data), "--log", "--device", "cpu", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"^hellaswag acc (\d\.\d{4}) acc_norm (\d\.\d{4}) over 3 items$", result.stdout, re.M)
    assert found, result.stdout
    # The callback scored the same weights at the same step: the same numbers.
    assert float(found.group(1)) == pytest.approx(scalars(run_dir, "val/hellaswag_acc")[0][1], abs=1e-4)
    # Beside the val/loss of the validation that saw these weights.
    assert scalars(run_dir, "hellaswag/acc") == [(1, pytest.approx(float(found.group(1)), abs=1e-4))]
    assert scalars(run_dir, "hellaswag/acc_norm") == [(1, pytest.approx(float(found.group(2)), abs=1e-4))]
    assert not list(run_dir.glob(".hellaswag-*"))  # the temporary folder is gone


@pytest.mark.slow
def test_the_command_line_names_a_missing_file(fitted, tmp_path):
    run_dir, data = fitted
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    missing = hellaswag_cli(str(ckpt), "--data", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert_clean_error(missing, f"error: HellaSwag file '{tmp_path / 'nope.jsonl'}' does not exist")
    no_ckpt = hellaswag_cli(str(tmp_path / "nope.ckpt"), "--data", str(data), cwd=tmp_path)
    assert_clean_error(no_ckpt, "does not exist; check the path")


def test_items_the_tokenizer_cannot_encode_stop_the_fit_before_training(tmp_path):
    (tmp_path / "corpus.txt").write_text(PLAY)
    data = write_jsonl(tmp_path / "h.jsonl", [{**ITEMS[0], "ctx": "[header] speak"}])
    callback = ["--trainer.callbacks+=gpt.train.eval_callbacks.HellaSwagEval", "--trainer.callbacks.path", str(data)]
    result = main_here(*fit_args(tmp_path / "corpus.txt", tmp_path / "data", steps=2), *callback, cwd=tmp_path)
    assert_clean_error(result, "cannot be encoded: character '['")
    assert not list(tmp_path.glob("lightning_logs/**/*.ckpt"))


def test_the_callback_takes_a_split_name_and_downloads_it_once(tmp_path, monkeypatch):
    """path: val reads data_dir/hellaswag/hellaswag_val.jsonl, fetched by the first process only."""
    from types import SimpleNamespace

    import gpt.train.eval_callbacks as eval_callbacks

    fetched, barriers = [], []

    def fake_download(split, data_dir):  # what gpt.eval.hellaswag.download does online, without the network
        path = Path(data_dir) / "hellaswag" / f"hellaswag_{split}.jsonl"
        if not path.exists():
            fetched.append(split)
            path.parent.mkdir(parents=True)
            write_jsonl(path, ITEMS)
        return path

    monkeypatch.setattr(eval_callbacks, "download", fake_download)
    for rank in (0, 1):
        trainer = SimpleNamespace(is_global_zero=rank == 0, strategy=SimpleNamespace(barrier=barriers.append))
        callback = eval_callbacks.HellaSwagEval(path="val", data_dir=str(tmp_path))
        callback.setup(trainer, None, "fit")
        assert callback.items == read_items(tmp_path / "hellaswag" / "hellaswag_val.jsonl")
    assert fetched == ["val"] and barriers == ["hellaswag", "hellaswag"]
