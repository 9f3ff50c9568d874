"""python -m gpt.eval.card: a chain of checkpoints on one page, one column a stage in the order
given, each score the one `python -m gpt.eval` gives for that checkpoint, tasks and limit, beside
chance and GPT-2's published figures with their sources; a mistake is one `error:` line and
nothing written."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from gpt.data.templates import TEMPLATES
from gpt.eval import card
from gpt.eval.__main__ import main as evaluate
from gpt.eval.published import SOURCES, always_one_choice, chance
from gpt.eval.tasks import task_named
from gpt.model.models import GPT
from gpt.tokenizers import TiktokenTokenizer
from helpers import assert_clean_error, eval_data, scalars, tiny_config, write_checkpoint

TASKS = ["--tasks", "lambada,piqa,mmlu_anatomy", "--limit", "3"]
# What the speed monitor and the checkpoint callback of a fit leave in a checkpoint (gpt/train/callbacks.py).
RECORD = {
    "callbacks": {
        "SpeedMonitor": {"tokens": 3072, "seconds": 75.4, "hardware": ["1 x CPU (Test CPU, 2 threads), 32-true"]},
        "ModelCheckpoint{'monitor': None, 'mode': 'min'}": {"current_score": None},  # a user's own, first
        "ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'}": {
            "current_score": torch.tensor(3.5)
        },  # before RunCheckpoint
    },
    "best_val_loss": 3.25,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three run folders of tiny GPT-2-tokenizer models (different weights); the second has the
    training record a fit leaves, and was tuned from the first; the third is a chat model."""
    tmp = tmp_path_factory.mktemp("runs")
    gpt2 = TiktokenTokenizer("gpt2")
    folders = []
    for seed, name in enumerate(["pre", "sft", "dpo"]):
        torch.manual_seed(seed)
        tokenizer = gpt2.with_special_tokens(TEMPLATES["chat"].special_tokens) if name == "dpo" else gpt2
        model = GPT(tiny_config(vocab_size=tokenizer.vocab_size))
        folder = tmp / "lightning_logs" / name / "version_0"
        extra = RECORD if name == "sft" else {}
        if name == "sft":
            extra = extra | {"hyper_parameters": dataclasses.asdict(model.config) | {"init_from": str(folders[0])}}
        template = "chat" if name == "dpo" else None
        write_checkpoint(folder / "checkpoints" / "last.ckpt", model, tokenizer, template, 10 * (seed + 1), **extra)
        folders.append(folder)
    return folders


def table(text: str, first: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the markdown table whose header starts with `first`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.split("|")[1:-1]])
    return rows[0], rows[2:]


def make_card(stages, *args, cwd, monkeypatch, capsys) -> str:
    monkeypatch.chdir(cwd)
    card.main([*map(str, stages), *TASKS, "--data_dir", str(eval_data()), *args])
    capsys.readouterr()
    return (cwd / "evals" / "report_card.md").read_text()


def test_one_column_a_stage_in_order_each_score_as_python_m_gpt_eval_gives_it(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    expected = {}
    for name, run in zip(["pre", "sft", "dpo"], runs):
        evaluate([str(run), *TASKS, "--data_dir", str(eval_data()), "--output", f"ref/{name}.json"])
        expected[name] = json.loads((tmp_path / "ref" / f"{name}.json").read_text())["tasks"]
    order = [runs[2], runs[0], runs[1]]
    text = make_card(order, "--names", "c,a,b", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    names = {"c": "dpo", "a": "pre", "b": "sft"}
    head, rows = table(text, "| task |")
    assert head == ["task", "metric", "chance", "c", "a", "b", "GPT-2 124M, published"]
    assert [r[:2] for r in rows] == [
        ["lambada", "acc"],
        ["lambada", "perplexity"],
        ["lambada", "items"],
        ["piqa", "acc"],
        ["piqa", "acc_norm"],
        ["piqa", "items"],
        ["mmlu_anatomy", "acc"],
        ["mmlu_anatomy", "items"],
    ]
    for row in rows:
        task, metric = row[:2]
        for column, name in enumerate(["c", "a", "b"], 3):
            result = expected[names[name]][task]
            if metric == "items":
                assert row[column] == f"{result['n']} ({result['truncated']} cut)"
            else:
                value = result["metrics"][metric]
                assert row[column] == f"{card.number(value['value'])} ± {card.number(value['stderr'])}"
    assert len(set(rows[1][3:6])) == 3  # three models, three perplexities
    for name, run in zip("cab", order):  # the JSON each column came from: python -m gpt.eval's, value for value
        written = json.loads((tmp_path / "evals" / f"{run.parent.name}-version_0-last.json").read_text())
        assert written["tasks"].keys() == expected[names[name]].keys()
        for task, result in written["tasks"].items():
            assert result["metrics"] == expected[names[name]][task]["metrics"]
            assert (result["n"], result["truncated"]) == (3, expected[names[name]][task]["truncated"])
    stages_head, _ = table(text, "| |")
    assert stages_head == ["", "c", "a", "b"]


def test_chance_levels_and_the_published_column_with_its_sources(runs, tmp_path, monkeypatch, capsys):
    text = make_card(runs[:1], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    _, rows = table(text, "| task |")
    chances = {(r[0], r[1]): r[2] for r in rows if r[1] != "items"}
    piqa, anatomy = (always_one_choice(task_named(t).load(eval_data(), 3)) for t in ("piqa", "mmlu_anatomy"))
    assert chances == {
        ("lambada", "acc"): "0",
        ("lambada", "perplexity"): "—",
        ("piqa", "acc"): f"0.5 ({piqa[0]:.3f}–{piqa[1]:.3f})",
        ("piqa", "acc_norm"): f"0.5 ({piqa[0]:.3f}–{piqa[1]:.3f})",
        ("mmlu_anatomy", "acc"): f"0.25 ({anatomy[0]:.3f}–{anatomy[1]:.3f})",
    }
    # always the first choice, ..., always the last: the shares of the right answers
    two = [{"label": label, "choices": ["a", "b"]} for label in (0, 0, 1)]
    assert always_one_choice(two) == (1 / 3, 2 / 3)
    four = [{"label": label, "choices": list("ABCD")} for label in (3, 3, 1, 0)]
    assert always_one_choice(four) == (0.0, 0.5)  # never C; D half the time
    assert always_one_choice([{"context": "x", "target": " y"}]) is None  # LAMBADA: no choices
    figures = {(r[0], r[1]): r[-1] for r in rows if r[1] != "items"}
    assert figures[("lambada", "acc")] == "0.3256 [1] · 0.4599 [2]"
    assert figures[("lambada", "perplexity")] == "40.0554 [1] · 35.13 [2]"
    assert figures[("piqa", "acc")] == "—" and figures[("mmlu_anatomy", "acc")] == "—"
    sources = text.split("Sources of the published figures (cited, not claimed):\n\n")[1].splitlines()
    assert sources == [f"1. {SOURCES['lm-eval-2159']}", f"2. {SOURCES['gpt2-paper']}"]
    assert "issues/2159" in sources[0] and "Table 3" in sources[1] and "not comparable" in sources[1]
    assert (chance("hellaswag", "acc_norm"), chance("mmlu", "acc_macro"), chance("gsm8k", "exact_match")) == (
        0.25,
        0.25,
        0.0,
    )
    assert chance("humaneval", "pass@10") == 0.0 and chance("lambada", "perplexity") is None


def test_what_each_checkpoint_recorded_of_its_training(runs, tmp_path, monkeypatch, capsys):
    text = make_card(runs, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    head, rows = table(text, "| |")
    assert head == ["", "pre", "sft", "dpo"]  # named after their experiments' folders
    stages = {row[0]: row[1:3] for row in rows}
    assert stages["tokens seen"] == ["not recorded", "3,072"]
    assert stages["training time"] == ["not recorded", "1 min 15 s"]
    assert stages["hardware"] == ["not recorded", "1 x CPU (Test CPU, 2 threads), 32-true"]
    assert stages["val loss (best)"] == ["not recorded", "3.5000 (3.2500)"]
    assert stages["started from"] == ["—", f"`{runs[0]}`"]
    assert stages["sha256, step"][0].endswith(", step 10") and stages["sha256, step"][1].endswith(", step 20")
    assert stages["parameters"] == ["1,634,208", "1,634,208"]  # 2 x 32 with GPT-2's 50,257-token embedding
    prompts = {row[0]: row[1:] for row in rows}["prompts"]
    assert prompts == ["plain", "plain", "chat template (lambada: plain)"]  # a chat model asked through its template


def test_the_card_reads_the_record_a_fit_writes_today(trained):
    """RECORD above is written by hand; this is a checkpoint of `main.py fit` itself."""
    run_dir, last, _, _ = trained
    record = card.training_record(torch.load(last, weights_only=False))
    validations = [value for _, value in scalars(run_dir, "val/loss")]
    assert record["val_loss"] == pytest.approx(validations[-1]) and len(validations) == 2
    assert record["best_val_loss"] == pytest.approx(min(validations))
    assert record["tokens"] == 12 * 8 * 32 and record["seconds"] > 0 and record["hardware"][0].startswith("1 x CPU")


def test_scores_python_m_gpt_eval_wrote_are_read_not_scored_again(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    evaluate([str(runs[0]), *TASKS, "--data_dir", str(eval_data())])  # evals/pre-version_0-last.json
    first = make_card(runs[:1], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)

    def scored_again(*args):
        raise AssertionError("scored again")

    monkeypatch.setattr(card, "run_tasks", scored_again)
    again = make_card(runs[:1], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert table(again, "| task |") == table(first, "| task |")
    assert "(read)" in table(first, "| |")[1][-1][1]
    with pytest.raises(AssertionError, match="scored again"):  # another limit: the JSON does not answer it
        card.main([str(runs[0]), "--tasks", "piqa", "--limit", "2", "--data_dir", str(eval_data())])


def spoiled(checkpoint, folder):
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights
    path = folder / "spoiled.ckpt"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.slow  # each case starts the command
@pytest.mark.parametrize(
    "case, message",
    [
        ("a run folder without a checkpoint", "nor is it a Hugging Face GPT-2 folder, which holds a config.json"),
        ("a damaged checkpoint", "is damaged:"),
        ("an unknown task", "unknown task 'pika'; did you mean 'piqa'?"),
        ("names that do not fit", "--names gives 1 names for 2 stages; give one name a stage"),
        ("an output that is a folder", "is a folder; give a file name, e.g."),
    ],
)
def test_a_mistake_is_one_error_line_and_nothing_is_written(runs, tmp_path, case, message):
    (tmp_path / "empty" / "version_0").mkdir(parents=True)
    second = {
        "a run folder without a checkpoint": tmp_path / "empty" / "version_0",
        "a damaged checkpoint": spoiled(runs[1] / "checkpoints" / "last.ckpt", tmp_path),
    }.get(case, runs[1])
    args = [str(runs[0]), str(second), "--tasks", "pika" if case == "an unknown task" else "piqa", "--limit", "2"]
    args += ["--names", "one"] if case == "names that do not fit" else []
    args += ["--output", str(tmp_path)] if case == "an output that is a folder" else []
    result = subprocess.run(
        [sys.executable, "-m", "gpt.eval.card", *args, "--data_dir", str(eval_data())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_error(result, message)
    assert len(result.stderr.strip().splitlines()) == 2  # the error and the hint about GPT_TRACEBACK
    assert "use another copy" in result.stderr or case != "a damaged checkpoint"
    assert not (tmp_path / "evals").exists()  # no card, and no stage scored before the mistake was found
