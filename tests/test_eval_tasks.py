"""The benchmark tasks (gpt/eval/tasks/): the items are the texts lm-evaluation-harness builds from
the same files, damaged files are named by file and line, the metrics are what they say, a chat
model is asked through its template, and the registry knows every task."""

import math
import shutil
from pathlib import Path

import pytest
import torch

from gpt.data.templates import TEMPLATES
from gpt.eval import hellaswag as llmc
from gpt.eval.task import EvalSettings
from gpt.eval.tasks import TASKS, task_named
from gpt.eval.tasks import files as task_files
from gpt.eval.tasks.choice import check_encodable, choice_requests
from gpt.eval.tasks.hellaswag import LLMC_TASK, preprocess
from gpt.eval.tasks.mmlu import SUBJECTS
from gpt.model.models import GPT
from gpt.tokenizers import CHAT_TOKENS, CharTokenizer, TiktokenTokenizer
from helpers import ROOT, eval_data, tiny_config, write_jsonl

GPT2 = TiktokenTokenizer("gpt2")


def tiny_gpt(vocab_size: int = GPT2.vocab_size, block_size: int = 64) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(vocab_size=vocab_size, block_size=block_size)).eval()


def test_lambada_is_each_passage_and_its_last_word():
    items = TASKS["lambada"].load(eval_data(), limit=2)
    assert len(items) == 2
    assert items[0]["target"] == " signs"  # lm-eval's doc_to_target: " " + the last word
    assert items[0]["context"].endswith("I don't care about")
    assert items[0]["where"].endswith("lambada_test.jsonl, line 1")


def test_lambada_metrics_are_accuracy_and_the_perplexity_of_the_mean_log_likelihood():
    task = TASKS["lambada"]
    result = task.evaluate(tiny_gpt(), GPT2, task.load(eval_data(), limit=4), EvalSettings())
    lls = [r["loglikelihood"] for r in result.items]
    assert result.metrics["perplexity"].value == pytest.approx(math.exp(-sum(lls) / 4))
    assert result.metrics["acc"].value == sum(r["is_greedy"] for r in result.items) / 4
    assert (result.n, result.shots, result.truncated) == (4, 0, 3)  # 3 of the 4 passages are longer than 64
    assert result.settings == {"prompt": "plain", "style": "lm-eval", "lm_eval_task": "lambada_openai"}


def test_piqa_asks_the_goal_as_a_question_with_each_solution_as_an_answer():
    (item,) = TASKS["piqa"].load(eval_data(), limit=1)
    assert item["query"] == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert all(c.endswith("supply it with a water bottle and a food dish.") for c in item["choices"])
    assert item["choices"][0] != item["choices"][1]
    assert item["label"] == 0


def test_mmlu_is_every_subject_with_lm_evals_prompt_and_scores_each():
    assert len(SUBJECTS) == 57
    items = TASKS["mmlu"].load(eval_data(), limit=2)  # the first 2 of each subject
    assert len(items) == 114 and items[2]["subject"] == "anatomy"
    item = items[2]
    assert item["system"] == "The following are multiple choice questions (with answers) about anatomy.\n\n"
    assert item["query"].startswith("A lesion causing compression of the facial nerve")
    assert item["query"].endswith(
        "\nD. paralysis of the facial muscles, loss of taste, lacrimation and decreased salivation.\nAnswer:"
    )
    assert (item["choices"], item["label"]) == (["A", "B", "C", "D"], 0)
    result = TASKS["mmlu"].evaluate(tiny_gpt(), GPT2, items[:6], EvalSettings())  # 3 subjects, 2 each
    by_subject = [result.metrics[f"{s}/acc"].value for s in SUBJECTS[:3]]
    assert result.metrics["acc_macro"].value == pytest.approx(sum(by_subject) / 3)
    assert result.metrics["acc"].value == pytest.approx(sum(r["acc"] for r in result.items) / 6)
    one = task_named("mmlu_anatomy")
    assert one.load(eval_data(), limit=2) == items[2:4] and one.name == "mmlu_anatomy"


def damaged_copy(tmp_path: Path, name: str, edit) -> Path:
    """data_dir/name as a copy of the published file with `edit` applied to its lines."""
    source = eval_data() / name
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / name).write_text("".join(edit(lines)), encoding="utf-8")
    return tmp_path / name


def test_a_changed_file_is_refused_by_its_checksum(tmp_path):
    path = damaged_copy(tmp_path, "lambada/lambada_test.jsonl", lambda lines: lines[:-1])
    with pytest.raises(ValueError, match=rf"{path} has sha256 .* not the published file's 4aa8d02cd17c7191"):
        TASKS["lambada"].load(tmp_path, limit=1)


@pytest.mark.parametrize(
    "task, name, edit, message",
    [
        (
            "lambada",
            "lambada/lambada_test.jsonl",
            lambda ls: [*ls[:2], '{"text": 3}\n'],
            r", line 3: text must be a str",
        ),
        ("lambada", "lambada/lambada_test.jsonl", lambda ls: [ls[0], "{nope\n"], r", line 2: not JSON"),
        (
            "piqa",
            "piqa/valid-labels.lst",
            lambda ls: [ls[0], "2\n", *ls[2:]],
            r"labels.lst, line 2: a label must be 0 or 1",
        ),
        (
            "mmlu_anatomy",
            "mmlu/test/anatomy_test.csv",
            lambda ls: [ls[0], "q,a,b,c,d,E\n"],
            r"line 2: expected 6 fields",
        ),
    ],
)
def test_a_malformed_line_is_named_by_file_and_line(tmp_path, monkeypatch, task, name, edit, message):
    for other in TASKS[task].files:  # the task's other files as published
        if other != name:
            (tmp_path / other).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(eval_data() / other, tmp_path / other)
    path = damaged_copy(tmp_path, name, edit)
    monkeypatch.setitem(task_files.SHA256, name, task_files.sha256_of(path))  # as if it were published so
    with pytest.raises(ValueError, match=message):
        TASKS[task].load(tmp_path)


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="--limit must be at least 1"):
        TASKS["piqa"].load(eval_data(), limit=0)


def hellaswag_line(ctx_a: str, ctx_b: str, endings: list[str], label: int) -> dict:
    return {
        "ind": 1,
        "activity_label": "Roof shingle removal",
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}",
        "endings": endings,
        "label": label,
    }


def test_hellaswag_is_prepared_as_lm_eval_prepares_it(tmp_path):
    endings = ["is using wrap to wrap a pair of skis.", "[title] Remove the shingles. [step] Pull them up.", "a", "b"]
    write_jsonl(
        tmp_path / "hellaswag" / "hellaswag_val.jsonl", [hellaswag_line("A man is on a roof.", "he", endings, 3)]
    )
    (item,) = TASKS["hellaswag"].load(tmp_path)
    assert item["query"] == "Roof shingle removal: A man is on a roof. He"  # ctx_b capitalised
    assert item["choices"][1] == " Remove the shingles. Pull them up."  # WikiHow's tags gone, as lm-eval's
    assert preprocess("How to X [title] Do y. [step] Z") == "How to X. Do y. Z"


def test_hellaswag_in_llm_c_style_scores_as_the_llm_c_module(tmp_path):
    lines = [
        hellaswag_line("A man is on a roof.", "he", [f"ending {i} " * (1 + i) for i in range(4)], i % 4)
        for i in range(6)
    ]
    write_jsonl(tmp_path / "hellaswag" / "hellaswag_val.jsonl", lines)
    model, items = tiny_gpt(block_size=8), LLMC_TASK.load(tmp_path)  # every item longer than the context
    result = LLMC_TASK.evaluate(model, GPT2, items, EvalSettings(batch_size=8))
    want = llmc.evaluate(model, GPT2, items)
    assert (result.metrics["acc"].value, result.metrics["acc_norm"].value) == (want["acc"], want["acc_norm"])
    assert result.truncated == 6 and result.settings["style"] == "llm.c"


def test_a_chat_model_is_asked_through_its_template():
    tokenizer = GPT2.with_special_tokens(CHAT_TOKENS)
    items = TASKS["mmlu_anatomy"].load(eval_data(), limit=1)
    settings = EvalSettings(chat_template=TEMPLATES["chat"])
    requests, _ = choice_requests("mmlu_anatomy", tokenizer, items, settings)
    text = tokenizer.decode(requests[0].context)
    assert text.startswith("<|system|>\nThe following are multiple choice questions (with answers) about anatomy.")
    assert text.endswith("\nAnswer:<|end|>\n<|assistant|>")
    assert tokenizer.special_tokens["<|assistant|>"] in requests[0].context  # the marker, not its characters
    # No space before the choice, and the header's newline moves to it, as in lm-eval's _encode_pair.
    assert tokenizer.decode(requests[0].continuation) == "\nA"
    result = TASKS["mmlu_anatomy"].evaluate(tiny_gpt(tokenizer.vocab_size), tokenizer, items, settings)
    assert result.settings["prompt"] == "chat template chat"
    plain, _ = choice_requests("mmlu_anatomy", GPT2, items, EvalSettings())
    assert GPT2.decode(plain[0].continuation) == " A"


def test_a_tokenizer_that_cannot_encode_an_item_is_named_with_the_item():
    items = TASKS["mmlu_anatomy"].load(eval_data(), limit=5)
    with pytest.raises(
        ValueError, match=r"mmlu_anatomy: .*anatomy_test.csv, line \d+ cannot be encoded .* a character"
    ):
        check_encodable("mmlu_anatomy", CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ,."), items)
    check_encodable("mmlu_anatomy", GPT2, items)  # a byte-level BPE encodes anything


def test_the_registry_knows_every_task_and_suggests_the_closest_name():
    assert {"lambada", "piqa", "mmlu", "hellaswag", "hellaswag_llmc", "gsm8k", "humaneval"} <= set(TASKS)
    assert len(TASKS) == 7 + 57 and TASKS["mmlu_world_religions"].subjects == ("world_religions",)
    with pytest.raises(ValueError, match="unknown task 'hellaswg'; did you mean 'hellaswag'?"):
        task_named("hellaswg")
    for name in ("gsm8k", "humaneval"):  # imported when asked for: there once their modules are
        if (ROOT / "gpt" / "eval" / "tasks" / f"{name}.py").is_file():
            assert TASKS[name].name == name
        else:
            with pytest.raises(ValueError, match=f"task '{name}' is not in this version of the project"):
                TASKS[name]


def test_hellaswag_offline_says_where_its_file_goes(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="without internet, put hellaswag_val.jsonl at .*hellaswag_val.jsonl"):
        TASKS["hellaswag"].download(tmp_path)
    assert not (tmp_path / "hellaswag").exists()
