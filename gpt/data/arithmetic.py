"""A task a small model can learn on a CPU in minutes and a program can check: adding numbers.

    python -m gpt.data.arithmetic data/arithmetic            # the files below, seeded

writes, for the reasoning recipe (configs/reasoning/, docs/grpo.md):

    corpus.txt     sums written out, "47+85=132", one a line: the text a model is pretrained on
    sft.jsonl      a few demonstrations as chats: the user asks "47+85", the assistant says "132"
    train.jsonl    problems for reinforcement learning: {"question": "47+85", "answer": "132"}
    test.jsonl     the held-out problems, which no other file holds (not in the corpus either)

Each problem adds two numbers of `digits` digits. The held-out set is drawn first, with its
own seed, and every other file leaves its sums out: accuracy on it is on sums never seen.
`exact_match` (gpt/eval/checkers.py) checks an answer: the reply, stripped, is the sum.

Plain Python, no torch.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from gpt.files import write_text


def problem(a: int, b: int) -> dict[str, str]:
    return {"question": f"{a}+{b}", "answer": str(a + b)}


def draw(rng: random.Random, digits: int) -> tuple[int, int]:
    low, high = 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1
    return rng.randint(low, high), rng.randint(low, high)


def held_out(n: int, digits: int, seed: int) -> list[tuple[int, int]]:
    """n distinct pairs, the same for a seed whatever else is drawn."""
    rng, pairs = random.Random(f"held-out/{seed}"), {}
    while len(pairs) < n:
        pairs.setdefault(draw(rng, digits), None)
    return list(pairs)


def others(n: int, digits: int, seed: int, name: str, exclude: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """n pairs (repeats allowed) outside `exclude`, from a stream of their own."""
    rng, pairs = random.Random(f"{name}/{seed}"), []
    while len(pairs) < n:
        pair = draw(rng, digits)
        if pair not in exclude:
            pairs.append(pair)
    return pairs


def chat(p: dict[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": p["question"]}, {"role": "assistant", "content": p["answer"]}]}


def write_task(
    folder: str | Path,
    digits: int = 2,
    corpus_lines: int = 20000,
    demonstrations: int = 100,
    problems: int = 5000,
    test: int = 200,
    seed: int = 0,
) -> Path:
    """The four files in folder (made if need be), each written whole or not at all."""
    if digits < 1 or min(corpus_lines, demonstrations, problems, test) < 1:
        raise ValueError("digits and every count must be at least 1")
    space = (10**digits - 10 ** (digits - 1) if digits > 1 else 10) ** 2
    if test > space // 2:
        raise ValueError(f"{test} held-out sums of {digits} digits would leave too few others ({space} in all)")
    folder = Path(folder)
    held = held_out(test, digits, seed)
    exclude = set(held)
    corpus = [problem(a, b) for a, b in others(corpus_lines, digits, seed, "corpus", exclude)]
    write_text(folder / "corpus.txt", "".join(f"{p['question']}={p['answer']}\n" for p in corpus))
    demos = [chat(problem(a, b)) for a, b in others(demonstrations, digits, seed, "sft", exclude)]
    write_text(folder / "sft.jsonl", "".join(json.dumps(d) + "\n" for d in demos))
    train = [problem(a, b) for a, b in others(problems, digits, seed, "train", exclude)]
    write_text(folder / "train.jsonl", "".join(json.dumps(p) + "\n" for p in train))
    write_text(folder / "test.jsonl", "".join(json.dumps(problem(a, b)) + "\n" for a, b in held))
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="where the four files go, e.g. data/arithmetic")
    parser.add_argument("--digits", type=int, default=2, help="digits of each number added")
    parser.add_argument("--corpus_lines", type=int, default=20000, help="sums in the pretraining text")
    parser.add_argument("--demonstrations", type=int, default=100, help="chats in sft.jsonl")
    parser.add_argument("--problems", type=int, default=5000, help="problems in train.jsonl")
    parser.add_argument("--test", type=int, default=200, help="held-out problems in test.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from gpt.errors import exit_on_user_error

    folder = exit_on_user_error(lambda: write_task(**vars(args)))
    print(f"wrote {folder}/corpus.txt, sft.jsonl, train.jsonl, test.jsonl")


if __name__ == "__main__":
    main()
