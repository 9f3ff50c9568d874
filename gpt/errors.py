"""Errors a user can cause, as one line: what was wrong and what to do, no traceback.

Every command-line entry point (main.py, python -m gpt.interop.hf, python -m gpt.eval.report) runs
through `exit_on_user_error`: a ValueError or OSError (a missing file, a bad value, a
checkpoint that is not one) prints `error: <message>` and exits with 1. GPT_TRACEBACK=1
shows the traceback instead. Plain Python, no Lightning.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def one_line(error: BaseException) -> str:
    """The message of an exception on one line (some libraries' messages span several)."""
    return class_choice(tokenizer_choice(" ".join(str(error).split()))) or type(error).__name__


def class_choice(message: str) -> str:
    """jsonargparse's message for a class (a logger, a callback) that none of a setting's types
    takes lists every type's complaint; keep the class's own (a package it needs, say)."""
    if "Union subtypes" not in message:
        return message
    found = re.search(r"Problem with given class_path '([\w.]+)':\s*(.*?)(?= - |$)", message)
    return f"{found.group(1)}: {found.group(2)}" if found else message


def tokenizer_choice(message: str) -> str:
    """jsonargparse's message for a data.tokenizer that none of the kinds accepts lists every
    kind's complaint; keep the one that says what is wrong (an unknown encoding, a vocabulary
    too small), or say what each kind takes."""
    if "Union subtypes" not in message or "CharSettings" not in message:
        return message
    ours = re.search(r"(unknown tiktoken encoding .*?|BPE vocab_size .*?)(?= - | Given value|$)", message)
    if ours:
        return f"data.tokenizer: {ours.group(1)}"
    given = re.search(r"Given value: (.*)$", message)
    return (
        "data.tokenizer: kind must be char, tiktoken or bpe, each with only its own settings "
        "(char: none; tiktoken: encoding; bpe: vocab_size, pattern, path)"
        + (f"; got {given.group(1)}" if given else "")
    )


def exit_on_user_error(main: Callable[[], Any], errors: tuple[type[BaseException], ...] = USER_ERRORS) -> Any:
    """Run main(); an error of the given kinds becomes one `error:` line and exit code 1."""
    try:
        return main()
    except errors as e:
        if os.environ.get("GPT_TRACEBACK"):
            raise
        print(f"error: {one_line(e)}\n(set GPT_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        sys.exit(1)


class Interrupted(BaseException):
    """SIGINT or SIGTERM outside training (predict, validate, test, preparing data): stop at
    once. A BaseException, as KeyboardInterrupt is, so that nothing mistakes it for an error
    to handle; Lightning passes it to the callbacks' on_exception (the JSON-lines writer drops
    its unfinished file) and raises it on. Training handles signals itself (SaveOnInterrupt)."""


def stop_on_signals() -> None:
    def stop(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
