"""How long saving a checkpoint stalls training: GPT-2 124M's shape with its AdamW state
(~1.5 GB: weights and two moments in fp32), saved the ways a run can save it, side by side.

    python benchmarks/checkpoint_pause.py                    # gpt2 (124M), into a temporary folder
    python benchmarks/checkpoint_pause.py --preset baby --dir /scratch

- ours: what fit does (gpt/train/checkpointing.py SafeCheckpointIO): torch.save into a file
  beside last.ckpt, flushed and fsynced, then renamed over it. Training waits for all of it.
- torch.save alone: Lightning's default, no fsync (the page cache takes the bytes; a crash of
  the machine soon after can lose them).
- in a thread: Lightning's AsyncCheckpointIO around ours: training waits while every tensor
  is cloned (a point-in-time copy), the write goes on beside the next steps.
- torch.distributed.checkpoint (DCP), the format of FSDP's `state_dict_type="sharded"`: each
  rank writes its own shard, in parallel (here one rank: one shard); `async_save` stages the
  tensors in memory and returns, the write goes on in a thread.

"pause" is what training waits; "done" is when the bytes are in the file (medians of --repeats).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.models import GPT  # noqa: E402
from gpt.model.optim import adamw  # noqa: E402
from gpt.train.checkpointing import SafeCheckpointIO  # noqa: E402


def training_state(preset: str) -> tuple[dict, int]:
    """A checkpoint as fit writes it: weights and AdamW's moments after one step."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(preset=preset, dropout=0.0))
    optimizer = adamw(model, learning_rate=1e-4, weight_decay=0.1)
    x = torch.randint(0, model.config.vocab_size, (1, 64))
    torch.nn.functional.cross_entropy(model(x)[0, :-1], x[0, 1:]).backward()
    optimizer.step()
    state = {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()], "global_step": 1}
    tensors = [*model.state_dict().values(), *(t for s in optimizer.state.values() for t in s.values())]
    unique = {t.data_ptr(): t for t in tensors}  # the tied embedding and LM head: one tensor
    return state, sum(t.numel() * t.element_size() for t in unique.values())


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def clone(state: dict) -> dict:
    """The point-in-time copy AsyncCheckpointIO takes on the training thread before it writes."""
    from lightning_utilities.core.apply_func import apply_to_collection

    return apply_to_collection(state, torch.Tensor, lambda t: t.detach().clone())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3, help="saves of each kind: their median is shown")
    args = parser.parse_args()
    state, size = training_state(args.preset)
    folder = Path(tempfile.mkdtemp(dir=args.dir))
    print(f"{args.preset} + AdamW: {size / 1e9:.2f} GB of tensors, written to {folder}\n")
    print("| save | pause | done | GB/s while paused |")
    print("| --- | --- | --- | --- |")
    dcp_state = {"model": state["state_dict"], "optimizer": state["optimizer_states"][0]["state"]}
    methods = {
        "ours: atomic, fsynced (fit's)": lambda i: SafeCheckpointIO().save_checkpoint(state, folder / f"last{i}.ckpt"),
        "torch.save alone": lambda i: torch.save(state, folder / f"plain{i}.ckpt"),
        "in a thread (AsyncCheckpointIO)": lambda i: (
            clone(state),
            lambda copy: SafeCheckpointIO().save_checkpoint(copy, folder / f"async{i}.ckpt"),
        ),
        "DCP sharded, 1 rank": lambda i: dcp.save(dcp_state, checkpoint_id=folder / f"sharded{i}"),
        "DCP async_save, 1 rank": lambda i: (
            dcp.async_save(dcp_state, checkpoint_id=folder / f"sharded_async{i}"),
            lambda future: future.result(),
        ),
    }
    try:
        for name, save in methods.items():
            pauses, dones = [], []
            for i in range(args.repeats):
                start = time.perf_counter()
                staged = save(i)  # a tuple (what was staged, what finishes the write) when asynchronous
                pauses.append(time.perf_counter() - start)
                if isinstance(staged, tuple):
                    staged[1](staged[0])
                dones.append(time.perf_counter() - start)
            pause, done = sorted(pauses)[len(pauses) // 2], sorted(dones)[len(dones) // 2]
            print(f"| {name} | {pause:.2f} s | {done:.2f} s | {size / 1e9 / pause:.1f} |", flush=True)
            for p in folder.iterdir():  # the page cache and the disk start each method alike
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
