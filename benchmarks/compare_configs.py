"""Train several configs one after the other and tabulate what each reaches.

    python benchmarks/compare_configs.py teaching      # bigram -> ... -> GPT, one budget
    python benchmarks/compare_configs.py tokenizers    # char, our BPE, gpt2, one wall clock
    python benchmarks/compare_configs.py a.yaml b.yaml [--corpus PATH] [-- extra main.py args]

Runs `python main.py fit --config C` for each config in a temporary folder, one after the
other (they would share the CPU cores otherwise), and prints the model's parameters, the
wall time of the whole command, and the last validation's loss (nats per token),
characters per token and bits per character, read back from TensorBoard and the
checkpoint. Bits per character compare across tokenizers; the loss per token does not.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.interop.checkpoint import load_checkpoint, model_config  # noqa: E402
from gpt.model.models import build_model  # noqa: E402

GROUPS = {
    "tokenizers": [
        "configs/shakespeare_char_cpu.yaml",
        "configs/shakespeare_bpe.yaml",
        "configs/shakespeare_gpt2.yaml",
    ],
    "teaching": [
        f"configs/teaching/{name}.yaml" for name in ("bigram", "head", "multi_head", "blocks", "gpt", "gpt_modern")
    ],
}


def num_params(checkpoint: Path) -> int:
    """The trained model's parameters, rebuilt from the checkpoint's hyperparameters."""
    config = model_config(load_checkpoint(checkpoint))
    with torch.device("meta"):
        return build_model(config).num_params()


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help=f"config files, or a group: {', '.join(GROUPS)}")
    parser.add_argument("--corpus", default=os.environ.get("TINY_SHAKESPEARE"))
    args = parser.parse_args(argv)
    configs = [c for name in args.configs for c in GROUPS.get(name, [name])]
    corpus = ["--data.corpus", str(Path(args.corpus).resolve())] if args.corpus else []

    print("| config | parameters | last val at step | wall s | val/loss (nats/token) | chars/token | val/bpc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for config in configs:
        with tempfile.TemporaryDirectory() as workdir:
            fit = [sys.executable, str(ROOT / "main.py"), "fit", "--config", str(ROOT / config)]
            command = [*fit, *corpus, "--trainer.enable_progress_bar=false", *extra]
            start = time.perf_counter()
            result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if result.returncode != 0:
                print(f"| {config} | failed: {result.stderr[-500:]} |")
                continue
            (events_file,) = Path(workdir, "lightning_logs").rglob("events.out.tfevents.*")
            events = EventAccumulator(str(events_file.parent), size_guidance={"scalars": 0})
            events.Reload()
            loss, bpc = events.Scalars("val/loss")[-1], events.Scalars("val/bpc")[-1]
            cpt = loss.value / math.log(2) / bpc.value
            n = num_params(next(Path(workdir, "lightning_logs").rglob("last.ckpt")))
            print(
                f"| {config} {' '.join(extra)} | {n:,} | {loss.step} | {wall:.0f} | {loss.value:.3f} | {cpt:.3f} "
                f"| {bpc.value:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
