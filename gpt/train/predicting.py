"""What LitGPT writes in predict: a sample of each prompt (a chat's prompt made by the
fine-tuned model's template), printed as it is written, and a record of it for a prediction
writer; a masked model fills the prompt's <|mask|> tokens instead. A fine-tuned model's sample
ends at its end of turn, as in the chat and the server; a chat is printed as its messages and
the reply, without the template's tokens."""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict
from typing import Any

import torch

from gpt.data.templates import Message, template
from gpt.model.generation import SEPARATOR, complete
from gpt.model.masking import fill_mask, format_fill
from gpt.model.quantize import int8_weights
from gpt.tokenizers import CHAT_TOKENS

FILL_CANDIDATES = 5  # masked predict: candidates shown for each <|mask|> when sampling.top_k is unset


def predict_items(module: Any, batch: list[dict[str, Any]], generator: torch.Generator) -> list[dict[str, Any]]:
    """Prints each sample (as it is written, with sampling.stream) and returns one record each:
    the item with its completion, finish and settings (or a fill-mask's candidates)."""
    if module.masked:
        k = module.sampling.top_k or FILL_CANDIDATES
        results = [fill_mask(module.model, module.tokenizer, item["prompt"], k) for item in batch]
        for result in results:
            print(format_fill(result) + SEPARATOR, flush=True)
        return [item | result for item, result in zip(batch, results)]
    prompts, chat = prompts_of(module, batch)
    results = complete(decoder(module), module.tokenizer, prompts, module.sampling, generator, sys.stdout, **chat)
    settings = asdict(module.sampling)
    return [item | {"completion": r.text, "finish": r.finish, "settings": settings} for item, r in zip(batch, results)]


def decoder(module: Any) -> torch.nn.Module:
    """The model predict decodes with: int8 weights with sampling.int8 (made once)."""
    if not module.sampling.int8:
        return module.model
    if getattr(module, "int8_model", None) is None:
        module.int8_model = int8_weights(copy.deepcopy(module.model))
    return module.int8_model


def prompts_of(module: Any, batch: list[dict[str, Any]]) -> tuple[list[str | None], dict[str, Any]]:
    """Predict's prompts and how to sample them: text as given, or a chat rendered by the
    model's template (its tokens allowed), shown as its messages; a fine-tuned model's end of
    turn ends every sample (it would write on through its <|end|> into the next turn)."""
    chats = [isinstance(item["prompt"], list) for item in batch]
    if not any(chats):
        return [item["prompt"] for item in batch], {"end_token": module.template.stop_token} if module.template else {}
    chat = module.template or template("chat" if CHAT_TOKENS[0] in module.tokenizer.special_tokens else "alpaca")
    prompts = [
        chat.prompt([Message(**m) for m in item["prompt"]]) if c else item["prompt"] for item, c in zip(batch, chats)
    ]
    shown = [shown_chat(item["prompt"]) if c else None for item, c in zip(batch, chats)]
    return prompts, {"allowed_special": set(chat.special_tokens), "end_token": chat.stop_token, "shown": shown}


def shown_chat(messages: list[dict[str, str]]) -> str:
    """A chat as predict prints it, as the terminal chat shows one: a line a message, then the reply."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
