"""Generation speed with and without the KV cache.

    python benchmarks/generate.py [--preset baby] [--new_tokens 500] [--batches 1 8] [--device cpu]

The preset's model with untrained weights (the speed does not depend on them) continues a
5-token prompt by new_tokens tokens, sampling at temperature 1. Each measurement runs in a
fresh process, so that its peak memory is its own: tokens/s (new tokens x batch / wall),
time to the first new token (the prefill and one sample), and the process's peak resident
memory (on a GPU: peak allocated memory). baby is nanoGPT's Shakespeare model: 6 layers x
384, context 256, so 500 new tokens run past the window and the cache re-prefills.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.generation import generate_tokens  # noqa: E402
from gpt.model.models import GPT  # noqa: E402


def measure(name: str, batch: int, new_tokens: int, use_cache: bool, device: str) -> dict:
    torch.manual_seed(0)
    model = GPT(GPTConfig(preset=name, dropout=0.0)).to(device).eval()
    prompt = torch.randint(0, model.config.vocab_size, (batch, 5), device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    steps = generate_tokens(model, prompt, new_tokens, temperature=1.0, generator=generator, use_cache=use_cache)
    next(steps)
    sync()
    first = time.perf_counter() - start
    n = 1 + sum(1 for _ in steps)
    sync()
    wall = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"tokens_per_s": n * batch / wall, "first_token_ms": first * 1000, "peak_mib": peak, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baby")
    parser.add_argument("--new_tokens", type=int, default=500)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", nargs=2, metavar=("BATCH", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        batch, cache = int(args.worker[0]), args.worker[1] == "1"
        print(json.dumps(measure(args.preset, batch, args.new_tokens, cache, args.device)))
        return

    config = GPTConfig(preset=args.preset)
    cache_mib = 2 * config.n_layer * config.block_size * config.n_embd * 4 / 2**20
    print(
        f"{args.preset}: {config.n_layer} layers x {config.n_embd}, context {config.block_size}; "
        f"{args.new_tokens} new tokens from a 5-token prompt on {args.device} "
        f"({torch.get_num_threads()} threads); KV cache {cache_mib:.1f} MiB per sequence"
    )
    print("| batch | KV cache | tokens/s | first token | peak memory | wall | speedup |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for batch in args.batches:
        results = {}
        for cache in (True, False):
            worker = ["--worker", str(batch), "1" if cache else "0"]
            settings = f"--preset {args.preset} --new_tokens {args.new_tokens} --device {args.device}".split()
            command = [sys.executable, __file__, *settings, *worker]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[cache] = r = json.loads(out.strip().splitlines()[-1])
            speedup = f"{r['tokens_per_s'] / results[True]['tokens_per_s']:.2f}x" if not cache else ""
            if not cache:
                speedup = f"{results[True]['tokens_per_s'] / r['tokens_per_s']:.1f}x slower"
            print(
                f"| {batch} | {'on' if cache else 'off'} | {r['tokens_per_s']:.0f} | {r['first_token_ms']:.1f} ms "
                f"| {r['peak_mib']:.0f} MiB | {r['wall_s']:.2f} s | {speedup} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
