"""Full fine-tuning against LoRA: parameters that train, peak memory and time a step, for GPT-2
small and medium shapes (random weights, fp32, AdamW, on this machine's CPU), each run in a
process of its own so that its peak is its own; and merged against unmerged logits.

    python benchmarks/lora_memory.py                       # gpt2 and gpt2-medium, batch 1 x 256 tokens
    python benchmarks/lora_memory.py --presets gpt2 --steps 2

Peak memory is the process's maximum resident set (ru_maxrss) less what its imports held: the
weights, the gradients and AdamW's moments of what trains, and the activations of one step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one_run(preset: str, lora: bool, steps: int, tokens: int) -> dict:
    import torch

    from gpt.model.config import GPTConfig
    from gpt.model.lora import LoRALinear, LoRASettings, apply_lora, merge_lora
    from gpt.model.models import GPT
    from gpt.model.optim import adamw

    torch.manual_seed(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # imports: torch and ours
    model = GPT(GPTConfig(preset=preset, block_size=tokens))
    if lora:
        apply_lora(model, LoRASettings(r=8, alpha=16, dropout=0.0))
    idx = torch.randint(0, 50257, (1, tokens + 1))
    optimizer = adamw(model, 1e-4, 0.1)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logits = model(idx[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx[0, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n),
        "peak_mib": (peak - before) / 1024,
        "s_per_step": min(times),
    }
    if lora:  # adapters that do something, then merged
        for layer in model.modules():
            if isinstance(layer, LoRALinear):
                torch.nn.init.normal_(layer.lora_B, std=0.02)
        model.eval()
        with torch.no_grad():
            unmerged = model(idx[:, :64])
            out["merge_max_abs_diff"] = (merge_lora(model)(idx[:, :64]) - unmerged).abs().max().item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["gpt2", "gpt2-medium"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # preset, full|lora: one run, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], args.one[1] == "lora", args.steps, args.tokens)))
        return
    print(f"fp32 AdamW, batch 1 x {args.tokens} tokens, best of {args.steps} steps, LoRA r=8 on attn, proj, mlp")
    print(
        f"{'model':<14}{'mode':<7}{'trains':>14}{'share':>9}{'peak memory':>14}{'s/step':>9}{'merged vs unmerged':>21}"
    )
    for preset in args.presets:
        for mode in ("full", "lora"):
            command = [sys.executable, __file__, "--one", preset, mode, "--steps", str(args.steps)]
            command += ["--tokens", str(args.tokens)]
            r = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            share = r["trainable"] / r["total"]
            diff = f"{r['merge_max_abs_diff']:.1e}" if "merge_max_abs_diff" in r else ""
            print(
                f"{preset:<14}{mode:<7}{r['trainable']:>14,}{share:>9.2%}{r['peak_mib']:>10,.0f} MiB"
                f"{r['s_per_step']:>9.2f}{diff:>21}"
            )


if __name__ == "__main__":
    main()
