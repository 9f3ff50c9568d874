"""Our scores are lm-evaluation-harness's: a small model of ours, exported to Hugging Face's
GPT-2 layout, is scored by lm-eval's `hf` model on LAMBADA, PIQA and three MMLU subjects read
from the same local files (gpt/eval/lm_eval_tasks.py: task configs as lm-eval's own YAMLs
write them, pointed at JSON files converted from the raw data: no network), and by our tasks on
the same export; item by item the log-likelihoods agree and every accuracy is equal.

Tolerance: each log-likelihood is a float32 sum over up to ~100 tokens, computed by two
implementations of the same network (Hugging Face's GPT-2 and ours) in batches of different
shapes (lm-eval runs each choice in its own row, we share a row between choices); float32
holds about 7 significant digits, so the sums may differ in the 7th: rel 1e-6 (abs 1e-5 near
zero). The measured difference is below 1e-5 on sums of ~400. Accuracies compare exactly.
The context is 64 tokens, so many items are cut, and the test checks that both cut them alike.
"""

import itertools

import pytest
import torch

from gpt.eval.lm_eval_tasks import lm_eval_tasks
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
            tasks=lm_eval_tasks(eval_data(), list(NAMES), tmp / "data", N),
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
