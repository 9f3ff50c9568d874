"""HumanEval (Chen et al., 2021): 164 Python functions to complete from their signature and
docstring; a completion passes when the problem's tests do.

    items = TASK.load(data_dir)                   # data_dir/humaneval/HumanEval.jsonl.gz
    TASK.evaluate(model, tokenizer, items, EvalSettings(num_samples=10, temperature=0.8))

A base model continues the prompt (the signature and docstring) and writes the body, stopped as
human-eval's and lm-evaluation-harness's runs stop it: at "\\nclass", "\\ndef", "\\n#", "\\nif" or
"\\nprint" (code after the function), at its end-of-text, or after 1,024 tokens. A chat model
(settings.chat_template) is given the prompt as the user's message, as nanochat asks it, and
its reply (a whole function, in a ``` block or not) is run after the prompt's imports. Each
program (the code, the problem's tests, check(entry_point)) runs in gpt/eval/executor.py's
sandbox, never in this process, while the decoder writes the next ones. pass@k, for each k of
1, 10, 100 up to settings.num_samples and for k = num_samples, is Chen et al.'s unbiased
estimator averaged over the problems; pass@1 of one greedy sample is the fraction that passes.

Plain torch, no Lightning.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gpt.eval.checkers import humaneval_program
from gpt.eval.executor import Outcome, run_program
from gpt.eval.sampling import encode_prompts, sample
from gpt.eval.task import EvalSettings, TaskResult, mean_and_stderr
from gpt.eval.tasks.files import check_limit, checked_file, json_object, numbered_lines
from gpt.model.batching import Decoded
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer

FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # human-eval's (Codex's) and lm-eval's
MAX_NEW_TOKENS = 1024  # lm-eval's max_gen_toks for humaneval
KS = (1, 10, 100)
TIMEOUT = 3.0  # seconds a program may run (human-eval's default)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that k of n samples, c of which pass, drawn without replacement, include one
    that passes: 1 - C(n - c, k) / C(n, k), Chen et al.'s unbiased estimator (exact here)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


class HumanEval:
    name = "humaneval"
    files = ("humaneval/HumanEval.jsonl.gz",)

    def load(self, data_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
        """The first `limit` problems: task_id, prompt, entry_point, canonical_solution, test."""
        check_limit(limit)
        lines = numbered_lines(checked_file(data_dir, self.files[0]), limit)
        return [json_object(line, where, dict.fromkeys(FIELDS, str)) for where, line in lines]

    def evaluate(
        self, model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], settings: EvalSettings
    ) -> TaskResult:
        template = settings.chat_template
        max_new_tokens = settings.max_new_tokens or MAX_NEW_TOKENS
        block_size = model.config.block_size
        texts = [item["prompt"] for item in items]
        prompts, truncated = encode_prompts(tokenizer, texts, template, self.name, block_size, max_new_tokens)
        stop = () if template is not None else STOP
        outcomes, completions = self.generate_and_run(model, tokenizer, items, prompts, settings, max_new_tokens, stop)
        n = settings.num_samples
        passed = [sum(o.passed for o in item_outcomes) for item_outcomes in outcomes]
        ks = sorted({k for k in KS if k <= n} | {n})
        metrics = {f"pass@{k}": mean_and_stderr([pass_at_k(n, c, k) for c in passed]) for k in ks}
        records = [
            {"task_id": item["task_id"], "completions": texts, "results": [o.result for o in results], "passed": c}
            for item, texts, results, c in zip(items, completions, outcomes, passed)
        ]
        isolation = next((o.isolation for item_outcomes in outcomes for o in item_outcomes if o.isolation), "")
        return TaskResult(
            task=self.name,
            metrics=metrics,
            n=len(items),
            truncated=truncated,
            settings={
                "prompt": "chat" if template is not None else "plain",
                "template": template.name if template is not None else None,
                "samples": n,
                "temperature": settings.temperature,
                "max_new_tokens": max_new_tokens,
                "stop": list(stop),
                "timeout_s": TIMEOUT,
                "sandbox": isolation,
            },
            items=records,
        )

    def generate_and_run(self, model, tokenizer, items, prompts, settings, max_new_tokens, stop):
        """Each item's completions, and their programs run in the sandbox as soon as an item's
        last sample is written, while the decoder goes on: (outcomes, texts) a list per item.
        Progress counts the items whose programs have all run (reported from this thread)."""
        runs: dict[int, list[Future]] = {}
        reported: set[int] = set()

        def report() -> None:
            ready = [i for i, fs in runs.items() if i not in reported and all(f.done() for f in fs)]
            reported.update(ready)
            if ready:
                settings.progress(len(ready))

        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:

            def submit(i: int, samples: list[Decoded]) -> None:
                programs = [humaneval_program(s.text, items[i]) for s in samples]
                runs[i] = [pool.submit(run_program, p, TIMEOUT) for p in programs]
                report()

            completions = sample(model, tokenizer, prompts, settings, max_new_tokens, stop, submit)
            outcomes: list[list[Outcome]] = []
            for i in range(len(items)):
                outcomes.append([f.result() for f in runs[i]])
                report()
        return outcomes, [[s.text for s in samples] for samples in completions]


TASK = HumanEval()
