"""Instruction and chat data: records read from .json/.jsonl files or the hub, checked one by
one, rendered with a template and encoded with the tokens the model learns to write marked.

    Alpaca       {"instruction": ..., "input": ..., "output": ...}          (input may be "")
    chat         {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
    problem      {"question": ..., "answer": ...}: a chat of the two (GSM8K's, gpt/data/problems.py)
    preference   either of the two, with "chosen" and "rejected" replies in place of the last one

A mistake in a record is one error naming the file and line (a .json array's records too):
malformed JSON, a missing field, an unknown role, an empty reply, a template token in the text.

Plain Python, no Lightning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt.data.download import RECIPE_INSTRUCTIONS, download_recipe_instructions
from gpt.data.sources import HubDataset
from gpt.data.templates import ROLES, Message, Template
from gpt.tokenizers.base import Tokenizer


@dataclass(frozen=True)
class Record:
    """One example: a conversation whose last message is the reply to learn, or a preference
    pair (chosen and rejected replies to the same conversation)."""

    messages: tuple[Message, ...]
    where: str  # file:line, for errors
    chosen: str | None = None
    rejected: str | None = None
    format: str = field(default="chat", compare=False)  # alpaca or chat: the default template


def read_json_records(path: Path) -> list[tuple[Any, str]]:
    """(value, "file:line") of each record of a .jsonl file (one a line) or a .json array."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((json.loads(line), f"{path}:{number}"))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{number}: not JSON ({e.msg}); one JSON object a line") from None
        return records
    decoder, records = json.JSONDecoder(), []
    try:
        start = _array_start(text)
        position = start
        while True:  # each record with the line it starts on
            position = _skip(text, position)
            if text[position] == "]":
                break
            value, end = decoder.raw_decode(text, position)
            records.append((value, f"{path}:{text.count(chr(10), 0, position) + 1}"))
            position = _skip(text, end)
            if text[position] == ",":
                position += 1
            elif text[position] != "]":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    except IndexError:
        raise ValueError(f"{path}: not JSON (the array does not end)") from None
    return records


def _array_start(text: str) -> int:
    position = _skip(text, 0)
    if position >= len(text) or text[position] != "[":
        raise json.JSONDecodeError("Expecting '[': a .json file of records is one array of them", text, position)
    return position + 1


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def text_field(record: dict, name: str, where: str, allow_empty: bool = False) -> str:
    value = record.get(name)
    if value is None:
        raise ValueError(f"{where}: the record has no {name!r} field; it has {', '.join(map(repr, record)) or 'none'}")
    if not isinstance(value, str):
        raise ValueError(f"{where}: {name!r} must be text, got {type(value).__name__}")
    if not value.strip() and not allow_empty:
        raise ValueError(f"{where}: {name!r} is empty")
    return value


def to_record(value: Any, where: str) -> Record:
    """A record checked: its format from its fields, every field of the right kind."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a record must be a JSON object, got {type(value).__name__}")
    pair = ("chosen" in value) or ("rejected" in value)
    chosen = text_field(value, "chosen", where) if pair else None
    rejected = text_field(value, "rejected", where) if pair else None
    if "messages" in value:
        messages = chat_messages(value["messages"], where)
        if not pair and messages[-1].role != "assistant":
            raise ValueError(f"{where}: the last message is the {messages[-1].role}'s; a record ends with a reply")
        return Record(tuple(messages), where, chosen, rejected, "chat")
    if "instruction" in value:
        user = Message("user", text_field(value, "instruction", where), text_field(value, "input", where, True))
        if pair:
            return Record((user,), where, chosen, rejected, "alpaca")
        return Record((user, Message("assistant", text_field(value, "output", where))), where, format="alpaca")
    if "question" in value and "answer" in value and not pair:  # a problem and its worked answer
        question, answer = text_field(value, "question", where), text_field(value, "answer", where)
        return Record((Message("user", question), Message("assistant", answer)), where, format="chat")
    raise ValueError(
        f"{where}: neither an Alpaca record (instruction, input, output), a chat (messages) nor a problem "
        "(question, answer); "
        f"it has {', '.join(map(repr, value)) or 'no fields'}"
    )


def chat_messages(messages: Any, where: str) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else m
            raise ValueError(f"{where}: message {i} has role {role!r}; roles are {', '.join(ROLES)}")
        out.append(Message(m["role"], text_field(m, "content", f"{where}: message {i}", m["role"] == "system")))
    return out


def read_hub_records(hub: HubDataset) -> list[Record]:
    """The records of a Hugging Face hub dataset (downloaded once into its cache), checked."""
    rows = hub.load(instead="a local .json/.jsonl file with data.instructions.path")
    return [to_record(row, f"{hub.path}[{i}]") for i, row in enumerate(rows)]


def read_records(source: str | Path) -> list[Record]:
    """The records of a .json or .jsonl file, checked."""
    path = Path(source).expanduser()
    if not path.exists() and path.name in RECIPE_INSTRUCTIONS:  # the assistant recipe's: fetched on first use
        download_recipe_instructions(path)
    if not path.is_file():
        raise FileNotFoundError(f"instruction file {str(path)!r} does not exist; give a .json or .jsonl file")
    if path.suffix not in (".json", ".jsonl"):
        raise ValueError(f"instruction file {str(path)!r} is not .json or .jsonl")
    try:
        records = [to_record(value, where) for value, where in read_json_records(path)]
    except UnicodeDecodeError as e:
        raise ValueError(f"instruction file {str(path)!r} is not UTF-8 text ({e})") from None
    if not records:
        raise ValueError(f"instruction file {str(path)!r} holds no records")
    return records


@dataclass
class Encoded:
    """A record's ids and, for each, whether the model learns to write it."""

    ids: list[int]
    trained: list[bool]
    where: str


def check_no_template_tokens(record: Record, template: Template) -> None:
    texts = [m.content for m in record.messages] + [m.input for m in record.messages]
    texts += [t for t in (record.chosen, record.rejected) if t]
    for token in template.special_tokens:
        if any(token in text for text in texts):
            raise ValueError(f"{record.where}: the text holds {token}, a token of the {template.name} template")


def encode(tokenizer: Tokenizer, template: Template, messages: list[Message], where: str) -> Encoded:
    """The conversation rendered by the template and encoded whole (as transformers encodes
    the text its chat template renders), each token marked trained when it starts in a reply."""
    segments = template.render(messages)
    text = "".join(s.text for s in segments)
    ids = tokenizer.encode(text, allowed_special=set(template.special_tokens))
    spans, start = [], 0
    for s in segments:  # trained spans, in bytes
        size = len(s.text.encode("utf-8"))
        if s.trained:
            spans.append((start, start + size))
        start += size
    trained, offset = [], 0
    for token in ids:
        trained.append(any(a <= offset < b for a, b in spans))
        offset += len(tokenizer.token_bytes(token))
    return Encoded(ids, trained, where)


def encode_record(record: Record, tokenizer: Tokenizer, template: Template) -> list[Encoded]:
    """The record's one example, or a preference pair's two (chosen first)."""
    check_no_template_tokens(record, template)
    if record.chosen is None:
        return [encode(tokenizer, template, list(record.messages), record.where)]
    replies = (record.chosen, record.rejected)
    return [encode(tokenizer, template, [*record.messages, Message("assistant", r)], record.where) for r in replies]
