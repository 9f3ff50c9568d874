"""Multiple choice by log-likelihood, as lm-evaluation-harness's `multiple_choice` tasks score it
(lm_eval/api/task.py, process_results): each choice is a continuation of the question, and

    acc       the choice with the highest summed log-probability is the label
    acc_norm  the same, each sum divided by the choice's length in characters (lm-eval's
              acc_norm: len() of the choice string, without the space before it), so that a
              long choice is not penalised for having more tokens

An item is {"query", "choices", "label", "where"} and optionally "system" (MMLU's line
about its subject). A base model reads query and " " + choice; a chat model (settings.chat_template)
is asked through its template (system, user turn, the header of the reply) and the choice
follows the header with no space, as lm-eval does with apply_chat_template.

Plain torch, no Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Set
from typing import Any

from gpt.data.templates import Message
from gpt.eval.scoring import Request, encode_pair, item_progress, loglikelihoods
from gpt.eval.task import EvalSettings, TaskResult, mean_and_stderr
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer


def prompt_kind(settings: EvalSettings) -> str:
    """What result.settings["prompt"] says: plain text, or the chat template it went through."""
    return "plain" if settings.chat_template is None else f"chat template {settings.chat_template.name}"


def context_of(item: dict[str, Any], settings: EvalSettings) -> tuple[str, str, Set[str]]:
    """The text the choices continue, the delimiter before each choice, and the special
    tokens that text may hold (a template's markers)."""
    template = settings.chat_template
    if template is None:
        return item.get("system", "") + item["query"], " ", frozenset()
    system = [Message("system", item["system"])] if item.get("system") else []
    return template.prompt([*system, Message("user", item["query"])]), "", set(template.special_tokens)


def cannot_encode(task: str, where: str, error: ValueError) -> ValueError:
    return ValueError(
        f"{task}: {where} cannot be encoded by the model's tokenizer ({error}); a character tokenizer knows only its "
        "corpus's characters: evaluate a model with a BPE or tiktoken tokenizer (GPT-2's, or data.tokenizer bpe)"
    )


def texts_of(item: dict[str, Any]) -> list[str]:
    """The texts of an item that the model reads (the fields our tasks give it)."""
    texts = [item[f] for f in ("system", "query", "context", "target") if isinstance(item.get(f), str)]
    return texts + [c for c in item.get("choices", ()) if isinstance(c, str)]


def check_encodable(task: str, tokenizer: Tokenizer, items: list[dict[str, Any]]) -> None:
    """Refuse, before anything is scored, items that the tokenizer cannot encode (a character
    vocabulary meets a character its corpus did not have), naming the first. A byte-level BPE
    encodes anything, so one pass over the characters the items use settles most cases."""
    try:
        tokenizer.encode("".join(sorted({ch for item in items for text in texts_of(item) for ch in text})))
        return
    except ValueError:
        pass
    for item in items:
        for text in texts_of(item):
            try:
                tokenizer.encode(text)
            except ValueError as e:
                raise cannot_encode(task, item.get("where", "an item"), e) from None


def choice_requests(
    task: str, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
) -> tuple[list[Request], list[int]]:
    """Every choice of every item as a request, and the item each belongs to."""
    requests, item_of = [], []
    for n, item in enumerate(items):
        context, delimiter, allowed = context_of(item, settings)
        try:
            requests += [encode_pair(tokenizer, context, delimiter + choice, allowed) for choice in item["choices"]]
        except ValueError as e:
            raise cannot_encode(task, item["where"], e) from None
        item_of += [n] * len(item["choices"])
    return requests, item_of


def argmax(values: list[float]) -> int:
    """The index of the largest value, the first of equals (as numpy's argmax)."""
    return max(range(len(values)), key=values.__getitem__)


def per_character(logprob: float, choice: str) -> float:
    return logprob / len(choice) if choice else -math.inf  # numpy's x / 0 for a negative x


def evaluate_choices(
    task: str,
    model: LanguageModel,
    tokenizer: Tokenizer,
    items: list[dict[str, Any]],
    settings: EvalSettings,
    lm_eval_task: str,
    metrics: tuple[str, ...] = ("acc", "acc_norm"),
) -> TaskResult:
    """acc (and acc_norm) over the items, scored as lm-eval's task `lm_eval_task`, with one
    record an item: each choice's log-likelihood, the predictions and whether it was cut."""
    requests, item_of = choice_requests(task, tokenizer, items, settings)
    results = loglikelihoods(
        model, requests, settings.batch_size, settings.device, item_progress(item_of, settings.progress)
    )
    records, first = [], 0
    for item in items:
        mine = results[first : first + len(item["choices"])]
        first += len(mine)
        lls = [r.logprob for r in mine]
        pred = argmax(lls)
        pred_norm = argmax([per_character(ll, c) for ll, c in zip(lls, item["choices"])])
        records.append(
            {
                "where": item["where"],
                "label": item["label"],
                "loglikelihoods": lls,
                "is_greedy": [r.is_greedy for r in mine],
                "acc": float(pred == item["label"]),
                "acc_norm": float(pred_norm == item["label"]),
                "truncated": any(r.truncated for r in mine),
                **({"subject": item["subject"]} if "subject" in item else {}),
            }
        )
    return TaskResult(
        task=task,
        metrics={m: mean_and_stderr([r[m] for r in records]) for m in metrics},
        n=len(items),
        shots=0,
        truncated=sum(r["truncated"] for r in records),
        settings={"prompt": prompt_kind(settings), "style": "lm-eval", "lm_eval_task": lm_eval_task},
        items=records,
    )
