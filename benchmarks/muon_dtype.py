"""Muon's Newton-Schulz in fp32 against bf16 on this CPU: the optimizer step alone, and (with
--fit) the Muon config trained each way, its wall time and validation loss.

    python benchmarks/muon_dtype.py [--fit] [--config configs/shakespeare_char_muon.yaml]
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/muon_dtype.py --fit   # as a CPU without native bf16

gpt.model.muon runs Newton-Schulz in bf16 on a GPU and in fp32 on a CPU; torch.optim.Muon
always in bf16, which a CPU without native bf16 (AVX2 only) emulates many times slower. Each
fit runs in this process, in a temporary folder, one after the other, on Tiny Shakespeare.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gpt.model.muon as muon  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.models import GPT  # noqa: E402
from gpt.model.optim import muon_adamw  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@contextlib.contextmanager
def newton_schulz_in(dtype: torch.dtype):
    chosen = muon.newton_schulz_dtype
    muon.newton_schulz_dtype = lambda device: dtype
    try:
        yield
    finally:
        muon.newton_schulz_dtype = chosen


def ms_per_step(config: dict, dtype: torch.dtype, steps: int) -> float:
    """The median time of one Muon + AdamW step over the config's model, random gradients."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, **config))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = muon_adamw(model, 1e-2, 0.1)
    times = []
    with newton_schulz_in(dtype):
        for _ in range(steps + 3):  # the first steps make the state
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
    return sorted(times[3:])[steps // 2] * 1000


def fit(config: str, corpus: str, dtype: torch.dtype) -> tuple[float, float]:
    """`python main.py fit --config CONFIG` in a fresh folder: (wall seconds, last val/loss)."""
    import main as gpt_main

    with tempfile.TemporaryDirectory() as tmp, newton_schulz_in(dtype):
        before = Path.cwd()
        os.chdir(tmp)
        try:
            args = ["fit", "--config", str(ROOT / config), "--data.corpus", corpus]
            args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                cli = gpt_main.cli_main(args)
            wall = time.perf_counter() - start
        finally:
            os.chdir(before)
        return wall, float(cli.trainer.callback_metrics["val/loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare_char_muon.yaml")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps timed")
    parser.add_argument("--fit", action="store_true", help="also train the config with each dtype")
    parser.add_argument(
        "--corpus", default=os.environ.get("TINY_SHAKESPEARE", str(ROOT / "data/tinyshakespeare/input.txt"))
    )
    args = parser.parse_args()
    model = yaml.safe_load((ROOT / args.config).read_text())["model"]
    shape = {k: model[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}\n")
    print("| Newton-Schulz in | optimizer step | fit: wall | fit: val loss |")
    print("| --- | --- | --- | --- |")
    for name, dtype in DTYPES.items():
        ms = ms_per_step(shape, dtype, args.steps)
        wall, val = fit(args.config, args.corpus, dtype) if args.fit else (float("nan"), float("nan"))
        print(f"| {name} | {ms:.2f} ms | {wall:.1f} s | {val:.4f} |", flush=True)


if __name__ == "__main__":
    main()
