"""Past the context window: what each way of going on costs, and how well it predicts.

    python benchmarks/past_the_window.py --ckpt PATH/TO/last.ckpt [--tokens 3000] [--corpus PATH]

A trained RoPE GPT reads a stretch of the validation split (the last 10% of the corpus) and
predicts every next token, teacher-forced, in the three ways generation can go on past
block_size (gpt/model/generation.py):
- recompute: a fresh forward of the last block_size tokens for every token (generation
  without the cache; the anchor: what the model saw in training);
- rolling cache: sliding-window attention, one token a step (RoPE's default);
- context shift: when the cache is full, re-prefill the last block_size // 2 tokens
  (what learned positions must do; forced here with KVCache(rolling=False)).
Prints, over the tokens past the first window, the validation loss of each and its time a
token. Train a checkpoint in half a minute with
    python main.py fit --config configs/shakespeare_char_cpu.yaml --model.pos rope --trainer.max_steps 600
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.interop.checkpoint import load_model  # noqa: E402
from gpt.model.layers import KVCache  # noqa: E402


def recompute(model, ids: torch.Tensor) -> torch.Tensor:
    """Logits for every position from its last block_size tokens, each a fresh forward."""
    W = model.config.block_size
    first = model(ids[:, :W])[0]
    rest = [model(ids[:, t - W + 1 : t + 1])[0, -1] for t in range(W, ids.size(1))]
    return torch.cat([first, torch.stack(rest)])


def cached(model, ids: torch.Tensor, rolling: bool) -> torch.Tensor:
    """Logits for every position through a KV cache, one token a step after the first window."""
    W = model.config.block_size
    cache = KVCache(model.config, 1, rolling=rolling)
    out = [model(ids[:, :W], cache=cache)[0]]
    for t in range(W, ids.size(1)):
        if not cache.fits(1):  # context shift, as generate_tokens does it
            cache.pos = 0
            out.append(model(ids[:, t + 1 - W // 2 : t + 1], cache=cache)[0, -1:])
        else:
            out.append(model(ids[:, t : t + 1], cache=cache)[0])
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path)
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--corpus", default=os.environ.get("TINY_SHAKESPEARE", "data/tinyshakespeare/input.txt"))
    args = parser.parse_args()
    model, tokenizer = load_model(args.ckpt)
    model.eval()
    if model.config.pos != "rope":
        sys.exit(f"error: {args.ckpt} has pos={model.config.pos!r}; the rolling cache needs a RoPE model")
    text = Path(args.corpus).read_text(encoding="utf-8")
    ids = torch.tensor([tokenizer.encode(text[int(0.9 * len(text)) :])[: args.tokens + 1]])
    W = model.config.block_size
    targets = ids[0, W + 1 :]  # the tokens past the first window
    print(f"{args.ckpt}: block_size {W}, {targets.numel():,} tokens past the first window\n")
    print("| way past the window | val loss | x recompute's loss | ms a token | x recompute's time |")
    print("| --- | --- | --- | --- | --- |")
    rows = {
        "recompute the last block_size (no cache)": recompute,
        "rolling cache (sliding window)": lambda m, x: cached(m, x, rolling=True),
        "context shift (re-prefill half a window)": lambda m, x: cached(m, x, rolling=False),
    }
    anchor = None
    with torch.inference_mode():
        for name, way in rows.items():
            start = time.perf_counter()
            logits = way(model, ids[:, :-1])
            seconds = (time.perf_counter() - start) / (ids.size(1) - 1 - W)
            loss = F.cross_entropy(logits[W:], targets).item()
            anchor = anchor or (loss, seconds)
            ratios = f"{loss / anchor[0]:.3f} | {1000 * seconds:.2f} | {seconds / anchor[1]:.2f}"
            print(f"| {name} | {loss:.4f} | {ratios} |")


if __name__ == "__main__":
    main()
