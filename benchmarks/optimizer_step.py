"""One AdamW step over a model's parameters: torch's CPU default (a loop over the tensors),
foreach (batched kernels) and fused (one kernel), side by side.

    python benchmarks/optimizer_step.py [--steps 50]

Gradients are random (the step's cost does not depend on them). Prints ms per step and each
against the default; gpt.model.optim.adamw runs fused wherever every parameter is on the CPU or on CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.models import GPT  # noqa: E402
from gpt.model.optim import param_groups  # noqa: E402

MODELS = {
    "configs/shakespeare_char_cpu.yaml (2 x 128)": dict(n_layer=2, n_head=4, n_embd=128, block_size=64, bias=True),
    "baby (6 x 384)": dict(preset="baby"),
}
KINDS = {"default (loop)": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


def ms_per_step(model: torch.nn.Module, steps: int, **kind) -> float:
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, **kind)
    for _ in range(5):  # warm-up: the state is made at the first step
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    print("| model | parameters | " + " | ".join(KINDS) + " | fused x default |")
    print("| --- | --- | " + " | ".join("---" for _ in KINDS) + " | --- |")
    for name, settings in MODELS.items():
        model = GPT(GPTConfig(vocab_size=65, **settings))
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        ms = {kind: ms_per_step(model, args.steps, **kw) for kind, kw in KINDS.items()}
        row = " | ".join(f"{v:.2f} ms" for v in ms.values())
        print(f"| {name} | {model.num_params():,} | {row} | {ms['default (loop)'] / ms['fused']:.1f} |")


if __name__ == "__main__":
    main()
