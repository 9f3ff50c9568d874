"""Prompts for predict: typed on the command line (escapes such as \\n allowed) or read from
a file, one a line, or one JSON value a line in a .jsonl file: a string, {"prompt": ...}, or a
chat {"messages": [...]} that a fine-tuned model's template turns into its prompt.

Plain Python, no Lightning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from gpt.data.instructions import chat_messages


def unescape(text: str) -> str:
    """Turn backslash escapes typed on a command line ("\\n") into the characters they name;
    one Python does not know ("\\-") stays as typed."""
    if "\\" not in text:
        return text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "invalid escape sequence": kept as typed
            return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"the prompt {text!r} has a broken escape sequence ({e.reason}); write \\\\ for a backslash"
        ) from None


def read_prompts(path: str) -> list[str | list[dict]]:
    """Prompts from a text file, one a line (escape sequences allowed; blank lines skipped),
    or from a .jsonl file, one JSON string, {"prompt": ...} or {"messages": [...]} a line (a
    chat: its messages, checked, as {role, content} dicts)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompts file {path!r} does not exist")
    prompts = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if file.suffix != ".jsonl":
            try:
                prompts.append(unescape(line))
            except ValueError as e:
                raise ValueError(f"{path}, line {number}: {e}") from None
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not JSON ({e.msg})") from None
        if isinstance(value, dict) and "messages" in value:
            messages = chat_messages(value["messages"], f"{path}:{number}")
            prompts.append([{"role": m.role, "content": m.content} for m in messages])
            continue
        prompt = value.get("prompt") if isinstance(value, dict) else value
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(
                f'{path}, line {number}: expected a non-empty string, {{"prompt": "..."}} or {{"messages": [...]}}, '
                f"got {line!r}"
            )
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"prompts file {path!r} has no prompts")
    return prompts


def prompt_items(prompts: list[str | None], num_samples: int) -> list[dict]:
    """Every sample of every prompt, in order: {"index", "sample", "prompt"} (None: no prompt)."""
    return [{"index": i, "sample": j, "prompt": p} for i, p in enumerate(prompts) for j in range(num_samples)]
