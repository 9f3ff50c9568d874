"""Quality per CPU-second against nanoGPT's CPU recipe, side by side on this machine.

    python benchmarks/vs_nanogpt.py --nanogpt PATH/TO/nanoGPT [--config configs/shakespeare_char_muon.yaml]

Runs nanoGPT's CPU recipe as its README gives it (4 layers x 128, context 64, batch 12, 2000
iterations, lr 1e-3, no dropout, no compile) on Tiny Shakespeare prepared as its
data/shakespeare_char/prepare.py does (from our copy: no download), then `python main.py fit
--config CONFIG`, one after the other (each would slow the other down), each in its own
temporary folder. For each: the wall time of the whole command, and the loss of its final
model over the whole validation split, every target scored once (nanoGPT's own figures
are estimates over 20 random batches, so its model is scored again here, the way ours is).
Then both validation curves against elapsed seconds.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.data.datasets import EvalWindows  # noqa: E402
from gpt.model.masking import IGNORE_INDEX  # noqa: E402

NANOGPT_CPU = (
    "config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1 "
    "--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 "
    "--lr_decay_iters=2000 --dropout=0.0 --always_save_checkpoint=True"
).split()


def prepare(text: str, folder: Path) -> np.ndarray:
    """nanoGPT's prepare.py: characters sorted, the first 90% train, the rest val; the val ids."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(len(text) * 0.9)
    folder.mkdir(parents=True, exist_ok=True)
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return ids[n:]


def exact_val_loss(nanogpt: Path, checkpoint: Path, val: np.ndarray) -> float:
    """The loss of nanoGPT's saved model over every validation target once."""
    sys.path.insert(0, str(nanogpt))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)  # nanoGPT's own file, made here
    model = GPT(GPTConfig(**saved["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in saved["model"].items()})
    model.eval()
    windows = EvalWindows(val, saved["model_args"]["block_size"])
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), 64):
            x, y = zip(*(windows[i] for i in range(start, min(start + 64, len(windows)))))
            x, y = torch.stack(x), torch.stack(y)
            n = int((y != IGNORE_INDEX).sum())
            _, loss = model(x, y.masked_fill(y == IGNORE_INDEX, -1))  # nanoGPT ignores -1
            total, count = total + float(loss) * n, count + n
    return total / count


def run_nanogpt(nanogpt: Path, text: str, work: Path) -> dict:
    shutil.copytree(nanogpt, work, ignore=shutil.ignore_patterns(".git", "out*"))
    val = prepare(text, work / "data" / "shakespeare_char")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "train.py", *NANOGPT_CPU], cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"nanoGPT failed:\n{result.stderr[-3000:]}")
    # "iter N: loss L, time T ms" every iteration; "step N: train loss A, val loss B" every eval.
    iter_ms = {int(i): float(t) for i, t in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", result.stdout)}
    curve = []
    for step, val_loss in re.findall(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", result.stdout):
        elapsed = sum(t for i, t in iter_ms.items() if i < int(step)) / 1000
        curve.append((int(step), elapsed, float(val_loss)))
    return {"wall": wall, "val": exact_val_loss(work, work / "out-shakespeare-char" / "ckpt.pt", val), "curve": curve}


def run_ours(config: str, text: str, work: Path, extra: list[str]) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work.mkdir(parents=True)
    (work / "data" / "tinyshakespeare").mkdir(parents=True)
    (work / "data" / "tinyshakespeare" / "input.txt").write_text(text, encoding="utf-8")
    args = [sys.executable, str(ROOT / "main.py"), "fit", "--config", str(ROOT / config), *extra]
    args += ["--trainer.enable_progress_bar", "false"]
    start = time.perf_counter()
    result = subprocess.run(args, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"main.py failed:\n{result.stderr[-3000:]}")
    (run,) = (work / "lightning_logs").glob("*/version_0")
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    val = events.Scalars("val/loss")
    first = min(e.wall_time for tag in ("train/loss", "val/loss") for e in events.Scalars(tag))
    curve = [(e.step + 1, e.wall_time - first, e.value) for e in val]  # elapsed from the first logged value
    return {"wall": wall, "val": val[-1].value, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, required=True, help="a checkout of karpathy/nanoGPT")
    parser.add_argument("--config", default="configs/shakespeare_char_muon.yaml")
    parser.add_argument(
        "--corpus", type=Path, default=Path(os.environ.get("TINY_SHAKESPEARE", "data/tinyshakespeare/input.txt"))
    )
    parser.add_argument("extra", nargs="*", help="more main.py arguments, after --")
    args = parser.parse_args()
    text = args.corpus.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        theirs = run_nanogpt(args.nanogpt, text, Path(tmp) / "nanogpt")
        ours = run_ours(args.config, text, Path(tmp) / "ours", args.extra)
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"\n{os.cpu_count()} CPUs, CPU capability {capability}, torch {torch.__version__}")
    emulation = {name: os.environ.get(name, "(unset)") for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    print(", ".join(f"{name}={value}" for name, value in emulation.items()) + "\n")
    print("| run | wall (whole command) | val loss, whole split | x nanoGPT's time |")
    print("| --- | --- | --- | --- |")
    print(f"| nanoGPT CPU recipe | {theirs['wall']:.1f} s | {theirs['val']:.4f} | 1.00 |")
    print(f"| `{args.config}` | {ours['wall']:.1f} s | {ours['val']:.4f} | {ours['wall'] / theirs['wall']:.2f} |")
    print(f"\nbelow nanoGPT by {theirs['val'] - ours['val']:+.4f}; below 1.88 by {1.88 - ours['val']:+.4f}\n")
    print("curves (step, seconds of training, val loss; nanoGPT's are its 20-batch estimates):")
    for name, run in (("nanoGPT", theirs), ("ours", ours)):
        print(f"  {name}: " + ", ".join(f"({s}, {t:.0f} s, {v:.3f})" for s, t, v in run["curve"]))


if __name__ == "__main__":
    main()
