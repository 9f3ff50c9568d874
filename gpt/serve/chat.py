"""Talk to a fine-tuned model in a terminal, from its checkpoint alone.

    python -m gpt.serve.chat lightning_logs/dpo_cpu/version_0/checkpoints/last.ckpt
    python -m gpt.serve.chat CKPT --system "You answer in one sentence." --temperature 0.7

Each reply streams as it is written and ends at the template's end-of-turn token. The whole
conversation is the prompt of the next reply; when it no longer fits the model's context
(with room for a reply), the oldest turns are dropped first, and the chat says so once.
/reset starts again, /quit (or Ctrl-D) ends.

Plain torch, no Lightning.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gpt.data.templates import Message, Template, template
from gpt.errors import exit_on_user_error
from gpt.interop.checkpoint import load_chat_model, said_checkpoint
from gpt.model.generation import SamplingSettings, complete_batch
from gpt.model.models import LanguageModel
from gpt.tokenizers import Tokenizer


@dataclass
class Chat:
    """A conversation with a model: the history, fitted to the context before each reply."""

    model: LanguageModel
    tokenizer: Tokenizer
    template: Template
    settings: SamplingSettings
    system: str | None = None
    history: list[Message] = field(default_factory=list)
    dropped: int = 0  # turns dropped to fit the context, so far

    def __post_init__(self) -> None:
        self.generator = torch.Generator(device=next(self.model.parameters()).device).manual_seed(self.settings.seed)

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        text = self.template.prompt(messages)
        return self.tokenizer.encode(text, allowed_special=set(self.template.special_tokens))

    def fitted(self) -> list[Message]:
        """The system message and the latest turns that fit the context with room for a reply."""
        room = self.model.config.block_size - self.settings.max_new_tokens
        head = [Message("system", self.system)] if self.system else []
        while len(self.prompt_ids(head + self.history)) > room and len(self.history) > 1:
            self.history = self.history[2:] if len(self.history) > 2 else self.history[1:]  # a user turn and its reply
            self.dropped += 1
        if len(self.prompt_ids(head + self.history)) > room:
            self.history.pop()
            raise ValueError(
                f"that message is too long for the model's context of {self.model.config.block_size} tokens with "
                f"{self.settings.max_new_tokens} for the reply; write a shorter one (or lower --max_new_tokens)"
            )
        return head + self.history

    def reply(self, text: str, on_text: Callable[[int, str], None] | None = None) -> str:
        """The model's reply to a user message, streamed to on_text, kept in the history."""
        for token in self.template.special_tokens:
            if token in text:
                raise ValueError(
                    f"the message holds {token}, a token of the {self.template.name} template; leave it out"
                )
        self.history.append(Message("user", text))
        messages = self.fitted()
        special = set(self.template.special_tokens)
        args = (self.model, self.tokenizer, [self.template.prompt(messages)], self.settings, self.generator)
        (result,) = complete_batch(*args, on_text, allowed_special=special, end_token=self.template.stop_token)
        self.history.append(Message("assistant", result.text.strip()))
        return result.text


def run(chat: Chat, lines, out) -> None:
    """The conversation loop: a line in, a reply out, until /quit or the input ends."""
    said_dropped = False
    out.write(
        f"Chatting with a {chat.template.name}-tuned model ({chat.model.config.block_size}-token context). "
        "/reset starts again, /quit ends.\n"
    )
    for line in lines:
        text = line.rstrip("\n")
        if text.strip() in ("/quit", "/exit"):
            break
        if text.strip() == "/reset":
            chat.history, chat.dropped, said_dropped = [], 0, False
            out.write("(a new conversation)\n")
            continue
        if not text.strip():
            continue
        out.write("assistant: ")
        try:
            chat.reply(text, lambda row, piece: (out.write(piece), out.flush()))
        except ValueError as e:
            out.write(f"\nerror: {e}\n")
            continue
        out.write("\n")
        if chat.dropped and not said_dropped:
            out.write(f"(the oldest turns no longer fit the {chat.model.config.block_size}-token context: dropped)\n")
            said_dropped = True
        out.flush()


def main(args: list[str] | None = None) -> None:
    from jsonargparse import ArgumentParser

    p = ArgumentParser(
        prog="python -m gpt.serve.chat", description="Talk to a fine-tuned model in a terminal.", allow_abbrev=False
    )
    p.add_argument(
        "ckpt", type=str, help="a fine-tuned checkpoint (SFT or DPO), or its run folder, e.g. lightning_logs/NAME"
    )
    p.add_argument("--system", type=str | None, default=None, help="a system message that opens the conversation")
    p.add_argument("--max_new_tokens", type=int, default=200, help="the longest reply, in tokens")
    p.add_argument("--temperature", type=float, default=0.7, help="0 is greedy")
    p.add_argument("--top_k", type=int | None, default=50, help="sample among the k likeliest tokens")
    p.add_argument("--top_p", type=float | None, default=None, help="nucleus sampling")
    p.add_argument("--seed", type=int, default=1337, help="the same seed and input give the same replies")
    p.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(args)
    model, tokenizer, name = load_chat_model(said_checkpoint(a.ckpt))
    settings = SamplingSettings(
        max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, seed=a.seed
    )
    if a.max_new_tokens >= model.config.block_size:
        raise ValueError(
            f"--max_new_tokens {a.max_new_tokens} leaves no room for the conversation in a context of "
            f"{model.config.block_size} tokens; give at most {model.config.block_size // 2}"
        )
    chat = Chat(model.to(a.device), tokenizer, template(name), settings, a.system)
    run(chat, sys.stdin, sys.stdout)


if __name__ == "__main__":
    exit_on_user_error(main)
