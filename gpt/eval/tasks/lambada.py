"""LAMBADA (Paperno et al., 2016), OpenAI's version (the one GPT-2 reports): predict the last
word of a passage, which people guess only from the whole passage, not from its last sentence.

Scored as lm-evaluation-harness's `lambada_openai`: the context is the passage up to its last
space, the continuation " " + the last word (often several tokens).

    acc         the word is what greedy decoding writes: every one of its tokens is the
                model's argmax (lm-eval's is_greedy)
    perplexity  exp(-mean log-likelihood of the word): lower is better. Its standard error
                here is the delta method's, perplexity x stderr of the mean log-likelihood
                (lm-eval bootstraps it, with random resamples)

The passage is continued as plain text for a chat model too: there is no question to ask.
Plain torch, no Lightning.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gpt.eval.scoring import encode_pair, item_progress, loglikelihoods
from gpt.eval.task import EvalSettings, Score, TaskResult, mean_and_stderr
from gpt.eval.tasks.choice import cannot_encode
from gpt.eval.tasks.files import check_limit, checked_file, json_object, numbered_lines
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer


class Lambada:
    name = "lambada"
    files = ("lambada/lambada_test.jsonl",)

    def load(self, data_dir: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
        """The first `limit` passages, each split into its context and " " + last word."""
        check_limit(limit)
        items = []
        for where, line in numbered_lines(checked_file(data_dir, self.files[0]), limit):
            text = json_object(line, where, {"text": str})["text"]
            context, _, word = text.rpartition(" ")  # lm-eval: text.split(' ')[:-1] and [-1]
            if not context or not word:
                raise ValueError(f"{where}: the text has no last word after a space to predict")
            items.append({"context": context, "target": " " + word, "where": where})
        return items

    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult:
        requests = []
        for item in items:
            try:
                requests.append(encode_pair(tokenizer, item["context"], item["target"]))
            except ValueError as e:
                raise cannot_encode(self.name, item["where"], e) from None
        done = item_progress(list(range(len(items))), settings.progress)
        results = loglikelihoods(model, requests, settings.batch_size, settings.device, done)
        records = [
            {"where": item["where"], "loglikelihood": r.logprob, "is_greedy": r.is_greedy, "truncated": r.truncated}
            for item, r in zip(items, results)
        ]
        mean_ll = mean_and_stderr([r.logprob for r in results])
        perplexity = math.exp(-mean_ll.value)
        return TaskResult(
            task=self.name,
            metrics={
                "acc": mean_and_stderr([float(r.is_greedy) for r in results]),
                "perplexity": Score(perplexity, perplexity * mean_ll.stderr),
            },
            n=len(items),
            shots=0,
            truncated=sum(r.truncated for r in results),
            settings={"prompt": "plain", "style": "lm-eval", "lm_eval_task": "lambada_openai"},
            items=records,
        )


TASK = Lambada()
