"""What the generation tasks (GSM8K, HumanEval) share: a prompt as ids (plain, or asked through a
chat model's template), cut to the model's context, and num_samples completions of each,
written by the batched decoder (gpt/model/batching.py).

Plain torch, no Lightning.
"""

from __future__ import annotations

from collections.abc import Callable

from gpt.data.templates import Message, Template
from gpt.eval.task import EvalSettings
from gpt.model.batching import Decoded, Request, decode
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer


def prompt_ids(tokenizer: Tokenizer, text: str, template: Template | None, task: str, index: int) -> list[int]:
    """A task's prompt as ids: the text itself for a base model; for a chat model (a template),
    the text as a user's message and the header of the assistant's reply."""
    allowed: set[str] = set()
    if template is not None:
        text, allowed = template.prompt([Message("user", text)]), set(template.special_tokens)
    try:
        return tokenizer.encode(text, allowed_special=allowed)
    except ValueError as e:
        raise ValueError(
            f"{task}: the model's tokenizer cannot encode item {index} ({e}); "
            "this task needs a tokenizer that covers its text, such as a BPE (tiktoken's gpt2)"
        ) from None


def fit_to_context(ids: list[int], block_size: int, max_new_tokens: int) -> tuple[list[int], bool]:
    """The prompt's last tokens, leaving max_new_tokens of the context to write (but at most
    half of it), as lm-evaluation-harness cuts a context from the left; and whether it was cut."""
    keep = block_size - min(max_new_tokens, block_size // 2)
    return ids[-keep:], len(ids) > keep


def encode_prompts(
    tokenizer: Tokenizer, texts: list[str], template: Template | None, task: str, block_size: int, max_new_tokens: int
) -> tuple[list[list[int]], int]:
    """Every prompt as ids fitted to the context, and how many lost their start to it."""
    prompts, truncated = [], 0
    for i, text in enumerate(texts):
        ids, cut = fit_to_context(prompt_ids(tokenizer, text, template, task, i), block_size, max_new_tokens)
        prompts.append(ids)
        truncated += cut
    return prompts, truncated


def end_ids(tokenizer: Tokenizer, template: Template | None) -> frozenset[int]:
    """What ends a completion: <|endoftext|>, and a chat model's end of turn."""
    ends = {tokenizer.eot_id} - {None}
    if template is not None:
        ends.add(tokenizer.special_tokens[template.stop_token])
    return frozenset(ends)


def check_sampling(settings: EvalSettings) -> None:
    if settings.num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {settings.num_samples}")
    if settings.num_samples > 1 and settings.temperature == 0:
        raise ValueError(
            f"num_samples {settings.num_samples} with temperature 0 writes one completion "
            f"{settings.num_samples} times: give a temperature (Codex's pass@k: 0.2 for k=1, 0.8 for k=100)"
        )


def sample(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    settings: EvalSettings,
    max_new_tokens: int,
    stop: tuple[str, ...],
    on_item: Callable[[int, list[Decoded]], None] | None = None,
) -> list[list[Decoded]]:
    """settings.num_samples completions of each prompt, all through one continuous batch of
    settings.batch_size rows; sample j of item i draws with seed settings.seed + i * n + j, so a
    run repeats exactly. on_item(i, completions) is called as item i's last sample ends."""
    check_sampling(settings)
    n = settings.num_samples
    ends = end_ids(tokenizer, settings.chat_template)
    requests = [
        Request(ids, max_new_tokens, settings.temperature, stop=stop, end_ids=ends, seed=settings.seed + i * n + j)
        for i, ids in enumerate(prompts)
        for j in range(n)
    ]
    done: dict[int, list[Decoded]] = {}

    def finished(r: int, result: Decoded) -> None:
        done.setdefault(r, result)
        item = r // n
        if on_item is not None and all(item * n + j in done for j in range(n)):
            on_item(item, [done[item * n + j] for j in range(n)])

    results = decode(model.to(settings.device), tokenizer, requests, settings.batch_size, finished)
    return [results[i * n : (i + 1) * n] for i in range(len(prompts))]
