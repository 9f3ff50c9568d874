"""The same model under three tokenizers, each for the wall-clock budget of its config.

    python benchmarks/compare_tokenizers.py [--corpus PATH] [--configs a.yaml b.yaml ...]
        [-- extra main.py arguments, e.g. --trainer.max_steps 300]

Runs `python main.py fit --config C` for each config, one after the other (they share the
CPU cores otherwise), in a temporary folder, and prints the wall time of the whole command,
the steps, and the last validation's loss (nats per token), characters per token and
bits per character (read back from TensorBoard). Bits per character compare across
tokenizers; the loss per token does not.
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

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/shakespeare_char_cpu.yaml", "configs/shakespeare_bpe.yaml", "configs/shakespeare_gpt2.yaml"]


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.environ.get("TINY_SHAKESPEARE"))
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    args = parser.parse_args(argv)
    corpus = ["--data.corpus", str(Path(args.corpus).resolve())] if args.corpus else []

    print("| config | last val at step | wall s | val/loss (nats/token) | chars/token | val/bpc |")
    print("| --- | --- | --- | --- | --- | --- |")
    for config in args.configs:
        with tempfile.TemporaryDirectory() as workdir:
            command = [sys.executable, str(ROOT / "main.py"), "fit", "--config", str(ROOT / config), *corpus,
                       "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
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
            print(f"| {config} {' '.join(extra)} | {loss.step} | {wall:.0f} | {loss.value:.3f} | {cpt:.3f} | {bpc.value:.3f} |", flush=True)


if __name__ == "__main__":
    main()
