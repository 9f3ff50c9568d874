"""HellaSwag (Zellers et al., 2019): which of four endings continues a scene? Validation split,
10,042 items, downloaded once from the authors' repository (gpt/eval/hellaswag.py); chance 0.25.
Two styles, because published numbers use both:

    hellaswag        lm-evaluation-harness's `hellaswag`: the context is
                     "{activity_label}: {ctx_a} {ctx_b capitalised}", each text cleaned of
                     WikiHow's bracketed artifacts (its utils.preprocess), continued by
                     " " + ending; acc and acc_norm by the ending's characters
                     (gpt/eval/tasks/choice.py). The number on the Open LLM Leaderboard and
                     in most papers' tables (GPT-2 124M: acc 0.2892, acc_norm 0.3114).
    hellaswag_llmc   llm.c's and modded-nanogpt's: the raw `ctx` and " " + ending encoded
                     apart, acc by the summed log-probability, acc_norm by the mean per
                     token (gpt/eval/hellaswag.py). GPT-2 124M: acc 0.2859, acc_norm 0.2955.

Both GPT-2 numbers as llm.c's dev/data/hellaswag.py reports them.

Plain torch, no Lightning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from gpt.eval import hellaswag as llmc
from gpt.eval.task import EvalSettings, TaskResult, mean_and_stderr
from gpt.eval.tasks.choice import cannot_encode, evaluate_choices
from gpt.eval.tasks.files import check_limit, numbered_lines
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer

FILE = "hellaswag/hellaswag_val.jsonl"


def preprocess(text: str) -> str:
    """lm-eval's hellaswag utils.preprocess: WikiHow's " [title]" becomes a full stop, other
    bracketed tags go, double spaces become one."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def read(data_dir: str | Path, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
    """(where, item) for the first `limit` lines of the validation file, each checked."""
    check_limit(limit)
    path = Path(data_dir) / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; the evaluation downloads it when it is in no data folder")
    items = []
    for where, line in numbered_lines(path, limit):
        item = llmc.check_item(line, where)
        for field in ("activity_label", "ctx_a", "ctx_b"):
            if not isinstance(item.get(field), str):
                raise ValueError(f"{where}: {field} must be a string")
        items.append((where, item))
    return items


class HellaSwag:
    name = "hellaswag"
    files = (FILE,)

    def download(self, data_dir: str | Path) -> None:
        try:
            llmc.download("val", data_dir)
        except FileNotFoundError as e:  # offline: say where the file goes for this command
            raise FileNotFoundError(
                f"{str(e).split('; without internet')[0]}; without internet, put hellaswag_val.jsonl at "
                f"{Path(data_dir) / FILE}, or in the hellaswag/ of a folder given with --data_dir"
            ) from None

    def load(self, data_dir: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
        return [
            {
                "query": preprocess(f"{item['activity_label']}: {item['ctx_a']} {item['ctx_b'].capitalize()}"),
                "choices": [preprocess(ending) for ending in item["endings"]],
                "label": item["label"],
                "where": where,
            }
            for where, item in read(data_dir, limit)
        ]

    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult:
        return evaluate_choices(self.name, model, tokenizer, items, settings, lm_eval_task="hellaswag")


class HellaSwagLlmc(HellaSwag):
    name = "hellaswag_llmc"

    def load(self, data_dir: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
        return [{**item, "where": where} for where, item in read(data_dir, limit)]

    @torch.no_grad()
    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult:
        llmc.check_causal(model)
        was_training = model.training
        model.eval()  # no dropout while scoring
        try:
            records = self.score(model, tokenizer, items, settings)
        finally:
            model.train(was_training)
        return TaskResult(
            task=self.name,
            metrics={m: mean_and_stderr([r[m] for r in records]) for m in ("acc", "acc_norm")},
            n=len(items),
            shots=0,
            truncated=sum(r["truncated"] for r in records),
            settings={"prompt": "plain", "style": "llm.c"},
            items=records,
        )

    def score(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> list[dict[str, Any]]:
        """One record an item: the four endings' sums, right or not by each rule, cut or not."""
        records, per_batch = [], max(settings.batch_size // 4, 1)
        for start in range(0, len(items), per_batch):
            batch, rows = items[start : start + per_batch], []
            for item in batch:
                try:
                    context, endings = llmc.encode_item(tokenizer, item)
                except ValueError as e:
                    raise cannot_encode(self.name, item["where"], e) from None
                rows += [(context, ending) for ending in endings]
            totals, means = llmc.score_rows(model, rows, settings.device)
            for n, item in enumerate(batch):
                mine = rows[4 * n : 4 * n + 4]
                records.append(
                    {
                        "where": item["where"],
                        "label": item["label"],
                        "loglikelihoods": totals[4 * n : 4 * n + 4].tolist(),
                        "acc": float(int(totals[4 * n : 4 * n + 4].argmax()) == item["label"]),
                        "acc_norm": float(int(means[4 * n : 4 * n + 4].argmax()) == item["label"]),
                        "truncated": any(len(c) + len(e) > model.config.block_size + 1 for c, e in mine),
                    }
                )
            settings.progress(len(batch))
        return records


TASK = HellaSwag()
LLMC_TASK = HellaSwagLlmc()
