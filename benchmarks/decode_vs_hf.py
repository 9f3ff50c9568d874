"""Batch decoding speed against Hugging Face `generate`, the same weights side by side.

    python benchmarks/decode_vs_hf.py [--preset baby] [--new_tokens 200] [--long_tokens 500]
        [--batches 1 8] [--compile]

The preset's GPT (untrained: the speed does not depend on the weights) and the same weights
in transformers' GPT2LMHeadModel continue a 5-token prompt greedily. Within the context window
(HF cannot go past it), each measured after one warm-up call. Prints tokens/s for ours with
and without the KV cache and for HF, the ratios, whether the ids agree, and the floor set by
the weights alone: the time of the model's matmuls for one token, measured on their own. At
batch 1 every new token reads every weight once (43 MB for baby in fp32), so decoding is
bound by memory bandwidth, not by FLOPs.

Then past the window (--long_tokens, 500: HF's GPT-2 stops at its 256 positions), ours with
and without the cache: the uncached model reads the last block_size tokens at every step,
the cached one shifts its context (gpt/model/generation.py). The ids agree up to the first shift,
which is where the two stop seeing the same tokens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.interop.hf import hf_config, hf_state_dict  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.generation import generate  # noqa: E402
from gpt.model.models import GPT  # noqa: E402


def timed(fn, repeats: int = 3) -> tuple[torch.Tensor, float]:
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def matmul_floor(model: GPT, batch: int) -> float:
    """Seconds for one token's matmuls alone (every Linear of the model on one position)."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    xs = [torch.randn(batch, 1, m.in_features) for m in linears]
    with torch.no_grad():
        _, seconds = timed(lambda: [m(x) for m, x in zip(linears, xs)], repeats=20)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baby")
    parser.add_argument("--new_tokens", type=int, default=200)
    parser.add_argument("--long_tokens", type=int, default=500)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # GPT-2's layout (biases everywhere) so that transformers' GPT2LMHeadModel holds the same weights.
    model = GPT(GPTConfig(preset=args.preset, dropout=0.0, vocab_size=65, bias=True)).eval()
    hf = GPT2LMHeadModel(GPT2Config(**hf_config(model.config))).eval()
    missing, unexpected = hf.transformer.load_state_dict(hf_state_dict(model), strict=False)
    assert not unexpected and all(".attn.bias" in k or ".attn.masked_bias" in k for k in missing), missing
    hf.tie_weights()
    prompt = torch.randint(0, 65, (1, 8))
    with torch.no_grad():
        gap = (hf(prompt).logits - model(prompt)).abs().max().item()
    N = min(args.new_tokens, model.config.block_size - 5)
    print(f"{args.preset}: {sum(p.numel() for p in model.parameters()):,} parameters, {N} new tokens, greedy; ")
    print(f"logits of ours and HF's differ by at most {gap:.1e}\n")
    print("| batch | ours, cached | ours, uncached | HF generate | x HF | cached / uncached | same ids as HF | floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for batch in args.batches:
        prompt = torch.randint(0, 65, (batch, 5), generator=torch.Generator().manual_seed(batch))
        ours, t_ours = timed(lambda: generate(model, prompt, N, temperature=0))
        uncached, t_unc = timed(lambda: generate(model, prompt, N, temperature=0, use_cache=False), repeats=1)
        with torch.no_grad():
            theirs, t_hf = timed(lambda: hf.generate(prompt, max_new_tokens=N, min_new_tokens=N, do_sample=False))
        assert torch.equal(ours, uncached), "cached and uncached ids differ"
        agree = (ours == theirs).all(0).long().argmin().item() if not torch.equal(ours, theirs) else ours.size(1)
        same = "all" if agree == ours.size(1) else f"first {agree - 5}"
        floor = batch / matmul_floor(model, batch)
        print(
            f"| {batch} | {N * batch / t_ours:,.0f} tok/s | {N * batch / t_unc:,.0f} | {N * batch / t_hf:,.0f} | "
            f"{t_hf / t_ours:.2f} | {t_unc / t_ours:.1f} | {same} | {floor:,.0f} tok/s |"
        )
    print(f"\npast the window: {args.long_tokens} new tokens, ours with and without the KV cache\n")
    print("| batch | cached | uncached | cached / uncached | ids agree for |")
    print("| --- | --- | --- | --- | --- |")
    for batch in args.batches:
        prompt = torch.randint(0, 65, (batch, 5), generator=torch.Generator().manual_seed(batch))
        ours, t_ours = timed(lambda: generate(model, prompt, args.long_tokens, temperature=0))
        uncached, t_unc = timed(lambda: generate(model, prompt, args.long_tokens, temperature=0, use_cache=False), 1)
        same = (ours == uncached).all(0)
        agree = same.long().argmin().item() if not same.all() else same.numel()
        print(
            f"| {batch} | {args.long_tokens * batch / t_ours:,.0f} tok/s | {args.long_tokens * batch / t_unc:,.0f} | "
            f"{t_unc / t_ours:.1f} | the first {agree - 5} new tokens |"
        )
    if args.compile:
        model.forward = torch.compile(model.forward, dynamic=True)
        prompt = torch.randint(0, 65, (1, 5), generator=torch.Generator().manual_seed(1))
        _, t = timed(lambda: generate(model, prompt, N, temperature=0))
        print(f"\nours, batch 1, torch.compile(dynamic=True): {N / t:,.0f} tok/s")
    print("\nfloor: the model's matmuls alone for one token, the most any decoder can reach without fewer weight bytes")


if __name__ == "__main__":
    main()
