"""A model's greedy answers to the first held-out instructions of a fine-tuning data file: the
"before and after" of each step of the assistant recipe (docs/finetune.md).

    python benchmarks/assistant_answers.py --ckpt lightning_logs/assistant_sft_cpu/version_0/checkpoints/last.ckpt
    python benchmarks/assistant_answers.py --ckpt PRETRAINED.ckpt --template chat   # before SFT

The held-out records are those fit holds out (data.val_fraction 0.1, data.seed 1337). A
checkpoint without the template's tokens (before SFT) gets them as fit would give them: new
embedding rows at the mean.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt.data.finetuning import split_records  # noqa: E402
from gpt.data.instructions import read_records  # noqa: E402
from gpt.data.templates import template  # noqa: E402
from gpt.interop.checkpoint import checkpoint_tokenizer, load_checkpoint, model_of  # noqa: E402
from gpt.interop.init import load_weights  # noqa: E402
from gpt.model.generation import SamplingSettings, complete_batch  # noqa: E402
from gpt.model.models import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of ours (LoRA ones are merged)")
    parser.add_argument("--data", default="data/instructions/alpaca-1100.json", help="the records fit trained on")
    parser.add_argument("--template", default=None, help="alpaca or chat (default: the checkpoint's)")
    parser.add_argument("--n", type=int, default=5, help="held-out instructions to answer")
    parser.add_argument("--max_new_tokens", type=int, default=60)
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.ckpt)
    model, tokenizer = model_of(checkpoint, args.ckpt), checkpoint_tokenizer(checkpoint)
    chat = template(args.template or checkpoint.get("template") or "chat")
    grown = tokenizer.with_special_tokens(chat.special_tokens)
    if grown.vocab_size != tokenizer.vocab_size:  # before SFT: the template's tokens as fit adds them
        bigger = build_model(replace(model.config, vocab_size=grown.vocab_size))
        load_weights(bigger, model, args.ckpt, set(grown.special_tokens.values()))
        model, tokenizer = bigger.eval(), grown
    _, held_out = split_records(read_records(args.data), 0.1, 1337)
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    for record in held_out[: args.n]:
        question = record.messages[0]
        prompt = chat.prompt(list(record.messages[:-1]) if record.chosen is None else list(record.messages))
        with torch.inference_mode():
            (result,) = complete_batch(
                model,
                tokenizer,
                [prompt],
                settings,
                allowed_special=set(chat.special_tokens),
                end_token=chat.stop_token,
            )
        text = question.content + (f" [{question.input}]" if question.input else "")
        reference = record.messages[-1].content if record.chosen is None else record.chosen
        print(f"instruction: {text}\nthe data:    {reference}")
        print(f"the model:   {result.text.strip()!r}\n")


if __name__ == "__main__":
    main()
