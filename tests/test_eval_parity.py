"""Our scores are lm-evaluation-harness's: a small model of ours, exported to Hugging Face's
GPT-2 layout, is scored by lm-eval's `hf` model on LAMBADA, PIQA and three MMLU subjects read
from the same local files (task configs as lm-eval's own YAMLs write them, pointed at JSON
files here: no network), and by our tasks on the same export; item by item the log-likelihoods
agree and every accuracy is equal.

Tolerance: each log-likelihood is a float32 sum over up to ~100 tokens, computed by two
implementations of the same network (Hugging Face's GPT-2 and ours) in batches of different
shapes (lm-eval runs each choice in its own row, we share a row between choices); float32
holds about 7 significant digits, so the sums may differ in the 7th: rel 1e-6 (abs 1e-5 near
zero). The measured difference is below 1e-5 on sums of ~400. Accuracies compare exactly.
The context is 64 tokens, so many items are cut, and the test checks that both cut them alike.
"""

import csv
import itertools
import json

import pytest
import torch

from gpt.eval.subject import load_subject
from gpt.eval.task import EvalSettings
from gpt.eval.tasks import TASKS
from gpt.interop.hf import save_hf
from gpt.model.models import GPT
from gpt.tokenizers import TiktokenTokenizer
from helpers import eval_data, tiny_config

N = 8  # items a task (a subject)
SUBJECTS = ("anatomy", "college_physics", "world_religions")
NAMES = ("lambada", "piqa", *(f"mmlu_{s}" for s in SUBJECTS))


def local_tasks(data, folder) -> list[dict]:
    """lm-eval task configs (its lambada_openai, piqa and mmlu YAMLs) over the first N items of
    our files, written as the JSON its Hugging Face datasets hold."""
    folder.mkdir()

    def write(name: str, records: list[dict]) -> dict:
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return {"data_files": {"test": str(path)}, "cache_dir": str(folder / "cache")}

    lines = (data / "lambada" / "lambada_test.jsonl").read_text(encoding="utf-8").splitlines()[:N]
    lambada = {
        "task": "lambada",
        "dataset_kwargs": write("lambada", [json.loads(line) for line in lines]),
        "output_type": "loglikelihood",
        "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
        "doc_to_target": "{{' '+text.split(' ')[-1]}}",
        "metric_list": [
            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            {"metric": "acc"},
        ],
    }
    goals = (data / "piqa" / "valid.jsonl").read_text(encoding="utf-8").splitlines()[:N]
    labels = (data / "piqa" / "valid-labels.lst").read_text(encoding="utf-8").split()[:N]
    piqa = {
        "task": "piqa",
        "dataset_kwargs": write("piqa", [{**json.loads(g), "label": int(y)} for g, y in zip(goals, labels)]),
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{goal}}\nAnswer:",
        "doc_to_target": "label",
        "doc_to_choice": "{{[sol1, sol2]}}",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    }
    configs = [lambada, piqa]
    for subject in SUBJECTS:
        with open(data / "mmlu" / "test" / f"{subject}_test.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))[:N]
        records = [
            {"question": r[0], "subject": subject, "choices": r[1:5], "answer": "ABCD".index(r[5])} for r in rows
        ]
        about = subject.replace("_", " ")
        configs.append(
            {
                "task": f"mmlu_{subject}",
                "dataset_kwargs": write(f"mmlu_{subject}", records),
                "output_type": "multiple_choice",
                "description": f"The following are multiple choice questions (with answers) about {about}.\n\n",
                "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\n"
                "C. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
                "doc_to_choice": ["A", "B", "C", "D"],
                "doc_to_target": "answer",
                "metric_list": [{"metric": "acc"}],
            }
        )
    return [{**c, "dataset_path": "json", "test_split": "test"} for c in configs]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(our TaskResults, lm-eval's results) on the same export of the same model."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    tmp = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    save_hf(GPT(tiny_config(vocab_size=50257, block_size=64)), tmp / "hf", tokenizer=TiktokenTokenizer("gpt2"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_DATASETS_OFFLINE", "1")
        env.setenv("HF_HUB_OFFLINE", "1")
        theirs = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(tmp / "hf"), "dtype": "float32"},
            tasks=local_tasks(eval_data(), tmp / "data"),
            task_manager=TaskManager(include_defaults=False),
            batch_size=4,
            device="cpu",
            log_samples=True,
            bootstrap_iters=0,
        )
    subject = load_subject(tmp / "hf")  # ours reads the same export
    ours = {}
    for name in NAMES:
        task = TASKS[name]
        ours[name] = task.evaluate(
            subject.model, subject.tokenizer, task.load(eval_data(), N), EvalSettings(batch_size=5)
        )
    return ours, theirs


@pytest.mark.parametrize("name", NAMES)
def test_every_item_scores_as_in_lm_evaluation_harness(scored, name):
    ours, theirs = scored
    mine = ours[name].items
    samples = sorted(theirs["samples"][name], key=lambda s: s["doc_id"])
    assert len(mine) == len(samples) == N
    for record, sample in zip(mine, samples):
        lls = [resp[0] for resp in sample["filtered_resps"]]
        greedy = [resp[1] for resp in sample["filtered_resps"]]
        if name == "lambada":
            assert record["loglikelihood"] == pytest.approx(lls[0], rel=1e-6, abs=1e-5)
            assert record["is_greedy"] == greedy[0] == bool(sample["acc"])
            continue
        assert record["loglikelihoods"] == pytest.approx(lls, rel=1e-6, abs=1e-5)
        assert record["is_greedy"] == greedy
        assert record["acc"] == sample["acc"]
        if "acc_norm" in sample:
            assert record["acc_norm"] == sample["acc_norm"]
    results = theirs["results"][name]
    for metric, score in ours[name].metrics.items():
        if metric == "perplexity":
            assert score.value == pytest.approx(results["perplexity,none"], rel=1e-5)
        else:
            assert score.value == results[f"{metric},none"]


def test_the_comparison_covers_cut_and_whole_items_and_choices_far_apart(scored):
    ours, _ = scored
    cut = sum(ours[name].truncated for name in NAMES)
    assert 0 < cut < len(NAMES) * N  # items cut by the context of 64 and items kept whole are both compared
    # Equal accuracies mean something only if no two choices are closer than the tolerance.
    gaps = [
        abs(a - b)
        for name in NAMES[1:]
        for r in ours[name].items
        for a, b in itertools.combinations(r["loglikelihoods"], 2)
    ]
    assert min(gaps) > 1e-4
