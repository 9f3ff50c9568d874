"""What a report card sets beside a model's scores: the chance level of each metric (what
guessing scores) and GPT-2 124M's published scores, each with the source that says it.

    chance("piqa", "acc")                      # 0.5
    always_one_choice(items)                   # (0.232, 0.270): always A .. always D, on these items
    published("lambada", "perplexity")         # [(40.0554, "lm-eval-2159"), (35.13, "gpt2-paper")]
    SOURCES["gpt2-paper"]                      # what the source is and what it says

A published figure is quoted as its source gives it and cited, never claimed: where a source
scored differently from us (other preprocessing, another prompt, all items where a card may
score a subset), SOURCES says so. Only figures read in a source are here. Plain Python.
"""

from __future__ import annotations

# Chance by task and metric: 1 / choices for multiple choice (PIQA has 2 solutions, MMLU and
# HellaSwag 4 choices), 0 where an exact answer is asked for. Perplexity has no chance level
# to print here (a uniform guess's is vocab_size ** tokens of the word, which varies).
CHANCE: dict[str, dict[str, float]] = {
    "lambada": {"acc": 0.0},
    "piqa": {"acc": 0.5, "acc_norm": 0.5},
    "mmlu": {"acc": 0.25, "acc_macro": 0.25},
    "hellaswag": {"acc": 0.25, "acc_norm": 0.25},
    "hellaswag_llmc": {"acc": 0.25, "acc_norm": 0.25},
    "gsm8k": {"exact_match": 0.0, "exact_match_flexible": 0.0},
}


def chance(task: str, metric: str) -> float | None:
    """The score of guessing, or None where there is none to state."""
    if task.startswith("mmlu_"):
        task = "mmlu"
    if task == "humaneval" and metric.startswith("pass@"):
        return 0.0
    return CHANCE.get(task, {}).get(metric)


def always_one_choice(items: list[dict]) -> tuple[float, float] | None:
    """The lowest and highest score of always giving the same answer (choice k for every item),
    over these items of a multiple-choice task; None for other tasks. On a subset the right
    answers are not spread evenly over the choices, and a model that prefers one (an untrained
    one often does) scores that choice's share rather than 1 / choices."""
    if not items or not all("label" in item and "choices" in item for item in items):
        return None
    shares = [sum(item["label"] == k for item in items) / len(items) for k in range(len(items[0]["choices"]))]
    return min(shares), max(shares)


SOURCES: dict[str, str] = {
    "lm-eval-2159": (
        "EleutherAI/lm-evaluation-harness issue #2159, https://github.com/EleutherAI/lm-evaluation-harness/issues/2159 "
        "(2024-07-30): a user's run of lm-eval's `lambada_openai` (task version 1, 0-shot) with "
        "`--model hf --model_args pretrained=openai-community/gpt2`, as posted: acc 0.3256 ± 0.0065, perplexity "
        "40.0554 ± 1.4787, over all 5,153 passages. Scored as our `lambada` scores them."
    ),
    "gpt2-paper": (
        "Radford et al. (2019), Language Models are Unsupervised Multitask Learners, Table 3, zero-shot, the row "
        "117M (the paper's count for this 124M model): LAMBADA perplexity 35.13, accuracy 45.99%. OpenAI scored "
        "its own preprocessing of LAMBADA through invertible de-tokenizers, not lm-eval's task: a different "
        "measurement, not comparable to the digit."
    ),
    "llm.c": (
        "karpathy/llm.c, dev/data/hellaswag.py, its docstring for gpt2 (124M), over all 10,042 validation items: "
        '"eleuther harness reports acc 28.92%, acc_norm 31.14% (multiple choice style)" (our `hellaswag`) and '
        '"this script: 10042 acc: 0.2859 acc_norm: 0.2955 (completion style)" (our `hellaswag_llmc`).'
    ),
}

# (task, metric) -> [(value, source)], as the sources state them (percentages as fractions).
PUBLISHED: dict[tuple[str, str], list[tuple[float, str]]] = {
    ("lambada", "acc"): [(0.3256, "lm-eval-2159"), (0.4599, "gpt2-paper")],
    ("lambada", "perplexity"): [(40.0554, "lm-eval-2159"), (35.13, "gpt2-paper")],
    ("hellaswag", "acc"): [(0.2892, "llm.c")],
    ("hellaswag", "acc_norm"): [(0.3114, "llm.c")],
    ("hellaswag_llmc", "acc"): [(0.2859, "llm.c")],
    ("hellaswag_llmc", "acc_norm"): [(0.2955, "llm.c")],
}


def published(task: str, metric: str) -> list[tuple[float, str]]:
    """GPT-2 124M's published values of a task's metric, each with its source's key in SOURCES."""
    return PUBLISHED.get((task, metric), [])
