"""OpenAI's request and response shapes for /v1/completions and /v1/chat/completions, and the
jobs a request becomes: one a choice (n), each with the request's own sampling settings.

A request that cannot be served is refused before it waits, with the message of OpenAI's
error shape: {"error": {"message", "type": "invalid_request_error", "param", "code"}}.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from gpt.data.templates import Message, Template
from gpt.model.generation import start_ids
from gpt.model.models import GPT
from gpt.serve.engine import Job
from gpt.tokenizers import Tokenizer

MAX_N = 16  # choices of one request (each takes a slot)
MAX_SEED = 2**63 - 1 - MAX_N  # torch's generators take a 64-bit seed; choice i of seed s draws with s + i


class BadRequest(Exception):
    """A request that cannot be served: HTTP status, message, the parameter at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def error_body(message: str, param: str | None = None, code: str | None = None, kind: str = "invalid_request_error"):
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class StreamOptions(BaseModel):
    include_usage: bool = False  # a last chunk with the usage and no choices


class Sampling(BaseModel):
    """What both endpoints take besides the prompt (OpenAI's names; unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(default=None, ge=0, le=MAX_SEED)
    n: StrictInt = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: Any = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1)]  # a text or a list of texts (not token ids)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]  # a list of parts, as OpenAI takes it: text ones only

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


def stops(request: Sampling) -> tuple[str, ...]:
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise BadRequest("stop takes up to 4 non-empty strings", "stop")
    return tuple(stop)


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """A completion's prompt as predict encodes it ("" starts after <|endoftext|>)."""
    try:
        return start_ids(tokenizer, prompt or None)[0]
    except ValueError as e:
        raise BadRequest(f"the prompt cannot be encoded: {e}", "prompt") from None


def chat_ids(tokenizer: Tokenizer, template: Template | None, messages: list[ChatMessage]) -> list[int]:
    if template is None:
        raise BadRequest("this model was not fine-tuned to chat (it has no template): use /v1/completions", "messages")
    for m in messages:
        for token in template.special_tokens:
            if token in m.text:
                raise BadRequest(
                    f"a message holds {token}, a token of the model's {template.name} template", "messages"
                )
    text = template.prompt([Message(m.role, m.text) for m in messages])
    try:
        return tokenizer.encode(text, allowed_special=set(template.special_tokens))
    except ValueError as e:
        raise BadRequest(f"the messages cannot be encoded: {e}", "messages") from None


def jobs_for(
    request: Sampling, ids: list[int], model: GPT, tokenizer: Tokenizer, end_ids: frozenset[int], on_text, default: int
) -> list[Job]:
    """The request's n jobs, checked against the model's context."""
    if request.logprobs not in (None, False, 0):
        raise BadRequest("logprobs are not supported", "logprobs")
    room = model.config.block_size - len(ids)
    if room < 1:
        raise BadRequest(
            f"the prompt is {len(ids)} tokens; the model's context is {model.config.block_size}: shorten it", "prompt"
        )
    max_tokens = request.max_completion_tokens or request.max_tokens or min(default, room)
    if max_tokens > room:
        raise BadRequest(
            f"max_tokens {max_tokens} with a prompt of {len(ids)} tokens passes the model's context of "
            f"{model.config.block_size} tokens; give at most {room}",
            "max_tokens",
        )
    base = request.seed if request.seed is not None else None
    return [
        Job(
            ids=ids,
            max_tokens=max_tokens,
            on_text=on_text(i),
            temperature=request.temperature,
            top_p=request.top_p if request.top_p < 1 else None,
            stop=stops(request),
            end_ids=end_ids,
            seed=None if base is None else base + i,  # n choices of one seed differ from one another
            streaming=request.stream,
        )
        for i in range(request.n)
    ]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def completion(kind: str, rid: str, model: str, choices: list[dict], usage: dict | None) -> dict[str, Any]:
    body = {"id": rid, "object": kind, "created": int(time.time()), "model": model, "choices": choices}
    return body | ({"usage": usage} if usage is not None else {})


def usage(prompt: int, written: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": written, "total_tokens": prompt + written}
