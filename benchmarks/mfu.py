"""Training throughput as a share of the machine (MFU), ours against nanoGPT's model.py,
side by side in one run.

    python benchmarks/mfu.py [--nanogpt PATH/TO/nanoGPT] [--steps 8] [--repeats 2] [--profile]

Each row trains one model in a bare loop (forward, cross-entropy, backward, AdamW step) on
random ids, fp32 on the CPU, and times the steps after two warm-up steps: the CPU config
(2 x 128, context 64, batch 16), and nanoGPT's baby GPT (6 x 384, context 256, batch 16)
with its dropout of 0.2 and without. MFU = the model's training FLOPs a token
(GPT.flops_per_token: 6 per matmul weight plus attention) x tokens/s over the matmul peak
measured now (gpt.eval.report.matmul_peak_flops). With --nanogpt, nanoGPT's own GPT (its
model.py and its configure_optimizers) trains the same shapes in the same loop, and the
ratio is ours over its tokens/s. Runs alternate, best of --repeats. --profile prints
torch.profiler's top operators of one baby step, dropout on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.eval.report import matmul_peak_flops  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.models import GPT  # noqa: E402
from gpt.model.optim import adamw  # noqa: E402

VOCAB = 65  # Tiny Shakespeare's characters
ROWS = {  # name: (model shape, batch size)
    "CPU config, 2 x 128": (dict(n_layer=2, n_head=4, n_embd=128, block_size=64, bias=True, dropout=0.0), 16),
    "baby, dropout 0.2": (dict(n_layer=6, n_head=6, n_embd=384, block_size=256, bias=False, dropout=0.2), 16),
    "baby, dropout 0": (dict(n_layer=6, n_head=6, n_embd=384, block_size=256, bias=False, dropout=0.0), 16),
}


def ours(shape: dict) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = GPT(GPTConfig(vocab_size=VOCAB, **shape)).train()
    return model, adamw(model, 1e-3, 0.1)


def nanogpts(path: Path, shape: dict) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    sys.path.insert(0, str(path))
    from model import GPT as NanoGPT  # noqa: PLC0415 (nanoGPT's model.py, only with --nanogpt)
    from model import GPTConfig as NanoConfig  # noqa: PLC0415

    model = NanoGPT(NanoConfig(vocab_size=VOCAB, **shape)).train()
    return model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")


def logits_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(x, y) if not isinstance(model, GPT) else model(x)
    return out[0] if isinstance(out, tuple) else out  # nanoGPT returns (logits, loss)


def tokens_per_sec(model, optimizer, batch: int, block_size: int, steps: int) -> float:
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, VOCAB, (batch, block_size), generator=generator) for _ in range(2))

    def step() -> None:
        loss = F.cross_entropy(logits_of(model, x, y).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch * block_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout: time its model.py alongside")
    parser.add_argument("--steps", type=int, default=8, help="timed steps of the baby rows (the CPU config: 20x)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    peak = matmul_peak_flops()
    print(f"matmul peak {peak / 1e9:.0f} GFLOP/s (2048 x 2048 fp32, measured now), {torch.get_num_threads()} threads\n")
    print("| model | batch | MFLOP a token | ours tokens/s | ours MFU | nanoGPT tokens/s | nanoGPT MFU | x nanoGPT |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (shape, batch) in ROWS.items():
        steps = args.steps * (20 if shape["n_embd"] < 256 else 1)
        flops = GPT(GPTConfig(vocab_size=VOCAB, **shape)).flops_per_token()
        best = {"ours": 0.0, "nanoGPT": 0.0}
        for _ in range(args.repeats):
            for side in best if args.nanogpt else ["ours"]:
                torch.manual_seed(0)
                model, optimizer = ours(shape) if side == "ours" else nanogpts(args.nanogpt, shape)
                rate = tokens_per_sec(model, optimizer, batch, shape["block_size"], steps)
                best[side] = max(best[side], rate)
        a, b = best["ours"], best["nanoGPT"]
        theirs = f"{b:,.0f} | {flops * b / peak:.2f} | {a / b:.2f}" if b else "- | - | -"
        print(f"| {name} | {batch} | {flops / 1e6:.1f} | {a:,.0f} | {flops * a / peak:.2f} | {theirs} |", flush=True)
    if args.profile:
        from torch.profiler import profile

        shape, batch = ROWS["baby, dropout 0.2"]
        model, optimizer = ours(shape)
        tokens_per_sec(model, optimizer, batch, shape["block_size"], 1)
        with profile() as prof:
            tokens_per_sec(model, optimizer, batch, shape["block_size"], 1)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
