"""int8 weights against fp32, side by side in one run: decoding tokens/s at batch 1 and 16, the
fp32 floor (every Linear's matmul alone, the most an fp32 decoder can reach), how many greedy
ids stay the same, and for a trained checkpoint the validation loss on its whole split.

    python benchmarks/int8_decode.py --preset baby                  # random weights, nanoGPT's baby GPT
    python benchmarks/int8_decode.py --ckpt CKPT --data_dir data    # a trained model: the loss too
    PYTHONPATH=/path/to/torchao python benchmarks/int8_decode.py    # torchao's weight-only int8 as well

Methods: torch's dynamic quantization (int8 weights and activations quantized on the fly, the
CPU's int8 matmuls: gpt.model.quantize, what `--int8` serves and `--model.sampling.int8`
predicts with), and torchao's Int8WeightOnlyConfig where torchao imports.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decode_vs_hf import matmul_floor, timed  # noqa: E402

from gpt.data.corpus import Corpus  # noqa: E402
from gpt.data.datasets import EvalWindows, split_text  # noqa: E402
from gpt.interop.checkpoint import load_model  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.generation import generate  # noqa: E402
from gpt.model.models import GPT  # noqa: E402
from gpt.model.quantize import int8_weights  # noqa: E402


def torchao_int8(model: GPT) -> GPT | None:
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError:
        return None
    model = copy.deepcopy(model)
    quantize_(model, Int8WeightOnlyConfig())
    return model


def val_loss(model: GPT, ckpt: str, data_dir: str, corpus: str) -> float:
    """The loss over the whole validation split (every target once), as `validate` reports it."""
    _, tokenizer = load_model(ckpt)
    ids = Corpus(corpus, data_dir).ids(tokenizer)
    _, val = split_text(ids, 0.1, model.config.block_size)
    windows = torch.utils.data.DataLoader(EvalWindows(val, model.config.block_size), batch_size=64)
    total, n = 0.0, 0
    with torch.inference_mode():
        for x, y in windows:
            logits = model(x)
            scored = y != -100
            total += torch.nn.functional.cross_entropy(logits[scored], y[scored], reduction="sum").item()
            n += int(scored.sum())
    return total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baby")
    parser.add_argument("--ckpt", default=None, help="a trained checkpoint (its validation loss is measured)")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--corpus", default="shakespeare")
    parser.add_argument("--new_tokens", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(args.ckpt)[0] if args.ckpt else GPT(GPTConfig(preset=args.preset, vocab_size=65)).eval()
    models = {"fp32": model, "int8 (torch dynamic)": int8_weights(copy.deepcopy(model))}
    if (ao := torchao_int8(model)) is not None:
        models["int8 (torchao weight-only)"] = ao
    new = min(args.new_tokens, model.config.block_size - 8)
    prompt = torch.randint(0, model.config.vocab_size, (16, 8), generator=torch.Generator().manual_seed(1))
    rows, reference = {}, {}
    for name, m in models.items():
        for batch in (1, 16):
            out, seconds = timed(lambda m=m, b=batch: generate(m, prompt[:b], new, temperature=0), repeats=2)
            rows[name, batch] = batch * new / seconds
            reference.setdefault(batch, out)
            same = (out[:, 8:] == reference[batch][:, 8:]).float().mean().item()
            rows[name, batch, "same"] = same
    floor = {b: b / matmul_floor(model, b) for b in (1, 16)}
    what = args.ckpt or f"{args.preset}, random weights"
    params = sum(p.numel() for p in model.parameters())
    print(f"{what}: {params / 1e6:.1f}M parameters, greedy, {new} new tokens, KV cache, 2 runs best")
    print("| weights | batch 1 tok/s | x fp32 | x fp32 floor | batch 16 tok/s | x fp32 | same greedy ids | val loss |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, m in models.items():
        loss = f"{val_loss(m, args.ckpt, args.data_dir, args.corpus):.4f}" if args.ckpt else ""
        b1, b16 = rows[name, 1], rows[name, 16]
        print(
            f"| {name} | {b1:,.0f} | {b1 / rows['fp32', 1]:.2f} | {b1 / floor[1]:.2f} | {b16:,.0f} | "
            f"{b16 / rows['fp32', 16]:.2f} | {rows[name, 1, 'same']:.0%} | {loss} |"
        )
    print(f"fp32 floor (the matmuls alone): batch 1 {floor[1]:,.0f} tok/s, batch 16 {floor[16]:,.0f} tok/s")
    assert math.isfinite(floor[1])


if __name__ == "__main__":
    main()
