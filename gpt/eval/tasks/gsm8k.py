"""GSM8K (Cobbe et al., 2021): grade-school maths word problems; the model writes a solution and
its final number is compared with the reference's.

    items = TASK.load(data_dir, limit=200)       # data_dir/gsm8k/test.jsonl: 1,319 problems
    TASK.evaluate(model, tokenizer, items, EvalSettings())

Scored as lm-evaluation-harness's `gsm8k` task: a base model reads 5 solved problems, each
"Question: ...\\nAnswer: <the reference solution, ending #### N>", then "Question: <the
problem>\\nAnswer:", and writes greedily until "Question:" (or </s>, <|im_end|>, its
end-of-text), at most 256 tokens. `exact_match` takes the number after "#### " (lm-eval's
strict-match, and the format nanochat's chat models learn), `exact_match_flexible` the last
number written (its flexible-extract). lm-eval draws its 5 examples from GSM8K's train split,
which is not among the offline files: ours are the first 5 problems of the test file (the 6th
for those five themselves), so our score compares with lm-eval's in kind, not to the digit.
A chat model (settings.chat_template) is asked as nanochat asks it: the problem alone as the
user's message, no examples, and its reply read the same two ways. result.settings says which.

Plain torch, no Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt.eval.checkers import gsm8k_correct, gsm8k_number, normalized
from gpt.eval.sampling import encode_prompts, sample
from gpt.eval.task import EvalSettings, TaskResult, mean_and_stderr
from gpt.eval.tasks.files import check_limit, checked_file, json_object, numbered_lines
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer

SHOTS = 5
STOP = ("Question:", "</s>", "<|im_end|>")  # lm-eval's gsm8k `until`
MAX_NEW_TOKENS = 256  # lm-eval's max_gen_toks


def fewshot_prompt(item: dict[str, Any]) -> str:
    """lm-eval's gsm8k prompt: SHOTS solved problems, then this one's question."""
    examples = [e for e in item["fewshot"] if e["question"] != item["question"]][:SHOTS]
    solved = [f"Question: {e['question']}\nAnswer: {e['answer']}" for e in examples]
    return "\n\n".join([*solved, f"Question: {item['question']}\nAnswer:"])


class GSM8K:
    name = "gsm8k"
    files = ("gsm8k/test.jsonl",)

    def load(self, data_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
        """The first `limit` problems: question, answer (the reference solution, ending #### N),
        and fewshot, the file's first SHOTS + 1 problems (the examples a base model reads)."""
        check_limit(limit)
        lines = numbered_lines(checked_file(data_dir, self.files[0]), None if limit is None else max(limit, SHOTS + 1))
        records = [json_object(line, where, {"question": str, "answer": str}) for where, line in lines]
        fewshot = [{"question": r["question"], "answer": r["answer"]} for r in records[: SHOTS + 1]]
        return [{"question": r["question"], "answer": r["answer"], "fewshot": fewshot} for r in records[:limit]]

    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult:
        template = settings.chat_template
        max_new_tokens = settings.max_new_tokens or MAX_NEW_TOKENS
        texts = [item["question"] if template is not None else fewshot_prompt(item) for item in items]
        block_size = model.config.block_size
        prompts, truncated = encode_prompts(tokenizer, texts, template, self.name, block_size, max_new_tokens)
        stop = () if template is not None else STOP  # a chat reply ends at its end-of-turn token
        progress = lambda i, samples: settings.progress(1)  # noqa: E731 - an item is done when its samples are
        completions = sample(model, tokenizer, prompts, settings, max_new_tokens, stop, progress)
        strict, flexible, records = [], [], []
        for item, samples in zip(items, completions):
            texts = [s.text for s in samples]
            strict.append(sum(gsm8k_correct(t, item) for t in texts) / len(texts))
            flexible.append(sum(gsm8k_correct(t, item, "flexible") for t in texts) / len(texts))
            extracted = [gsm8k_number(t) for t in texts]
            target = normalized(item["answer"])
            records.append({"question": item["question"], "target": target, "completions": texts, "strict": extracted})
        return TaskResult(
            task=self.name,
            metrics={"exact_match": mean_and_stderr(strict), "exact_match_flexible": mean_and_stderr(flexible)},
            n=len(items),
            shots=0 if template is not None else SHOTS,
            truncated=truncated,
            settings={
                "prompt": "chat" if template is not None else "plain",
                "template": template.name if template is not None else None,
                "fewshot_from": None if template is not None else f"the first {SHOTS} problems of the test file",
                "samples": settings.num_samples,
                "temperature": settings.temperature,
                "max_new_tokens": max_new_tokens,
                "stop": list(stop),
                "extraction": {"exact_match": "strict: #### N", "exact_match_flexible": "flexible: the last number"},
            },
            items=records,
        )


TASK = GSM8K()
