"""Lightning's overhead: the same model on the same batches, under Trainer and in a bare loop.

    python benchmarks/lightning_overhead.py [--config configs/shakespeare_char_cpu.yaml]
        [--steps 200] [--warmup 20] [--repeats 5] [--corpus PATH (default: $TINY_SHAKESPEARE)]
        [--batch_size N] [--precision 32-true]

The baby GPT on a CPU: --config configs/shakespeare_char.yaml --precision 32-true
--batch_size 16 --steps 30 --warmup 5 --repeats 1 (about 0.5 s a step).

Both runs build the model from the config with the same seed, feed the same DataLoader
(the config's batch size, block size and corpus), use the same AdamW groups, learning-rate
schedule and gradient clipping, and time the steps after `warmup`. The Trainer run keeps
what `main.py fit` runs (TensorBoard logger, the speed monitor, logging every
log_every_n_steps) except validation and checkpoints, which the bare loop does not do.
Runs alternate so that a slow spell of the machine hits both, and each side reports its
best run: on a shared machine interference only ever slows a run down, so the fastest run
is the closest to the code's own speed. Prints tokens/s, the ratio, and the model FLOP
utilisation of each against this machine's measured matmul peak (gpt.eval.report.matmul_peak_flops).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.loggers import TensorBoardLogger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.eval.report import matmul_peak_flops  # noqa: E402
from gpt.model.config import FIELDS, GPTConfig  # noqa: E402
from gpt.model.models import build_model  # noqa: E402
from gpt.model.optim import adamw, warmup_cosine  # noqa: E402
from gpt.tokenizers.settings import tokenizer_config  # noqa: E402
from gpt.train.callbacks import SpeedMonitor  # noqa: E402
from gpt.train.datamodule import GPTDataModule  # noqa: E402
from gpt.train.lit_module import LitGPT  # noqa: E402
from main import TRAINER_DEFAULTS  # noqa: E402

OPTIMIZER_ARGS = ("learning_rate", "min_lr", "warmup_steps", "weight_decay", "beta1", "beta2")


def data(config: dict) -> GPTDataModule:
    """The config's data module, tokenized and split."""
    data_args = dict(config.get("data", {}), block_size=config["model"].get("block_size", 256))
    if "tokenizer" in data_args:
        data_args["tokenizer"] = tokenizer_config(**data_args["tokenizer"])
    dm = GPTDataModule(**data_args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def trainer_setting(config: dict, name: str):
    """A trainer setting as main.py uses it: the config's, else main.py's default."""
    return config.get("trainer", {}).get(name, TRAINER_DEFAULTS.get(name))


def bare_loop(config: dict, steps: int, warmup: int, seed: int = 1337) -> float:
    """Plain torch: the model from gpt.model.models, AdamW and the schedule from gpt.model.optim."""
    dm = data(config)
    model_args = config["model"]
    gpt_args = {k: v for k, v in model_args.items() if k in FIELDS}
    defaults = inspect.signature(LitGPT).parameters  # the optimizer settings main.py would use
    hp = {k: model_args.get(k, defaults[k].default) for k in OPTIMIZER_ARGS}
    L.seed_everything(seed, verbose=False)
    model = build_model(GPTConfig(**gpt_args, vocab_size=dm.vocab_size)).train()
    optimizer = adamw(model, hp["learning_rate"], hp["weight_decay"], (hp["beta1"], hp["beta2"]))
    scheduler = warmup_cosine(optimizer, hp["warmup_steps"], steps, hp["min_lr"])
    clip = trainer_setting(config, "gradient_clip_val")
    batches = iter(dm.train_dataloader())
    tokens = 0
    for step in range(steps):
        if step == warmup:
            t0 = time.perf_counter()
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        if step >= warmup:
            tokens += x.numel()
    return tokens / (time.perf_counter() - t0)


class _Timer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.tokens, self.t0 = warmup, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step > self.warmup:
            self.tokens += batch[0].numel()
            self.t1 = time.perf_counter()


def lightning_loop(config: dict, steps: int, warmup: int, seed: int = 1337) -> float:
    dm = data(config)
    L.seed_everything(seed, verbose=False)
    module = LitGPT(vocab_size=dm.vocab_size, **config["model"])
    timer = _Timer(warmup)
    with tempfile.TemporaryDirectory() as logdir:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            precision=trainer_setting(config, "precision") or "32-true",
            max_steps=steps,
            limit_val_batches=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=trainer_setting(config, "log_every_n_steps"),
            gradient_clip_val=trainer_setting(config, "gradient_clip_val"),
            logger=TensorBoardLogger(logdir),
            callbacks=[SpeedMonitor(), timer],  # as main.py's fit, TensorBoard's pictures aside
        )
        trainer.fit(module, datamodule=dm)
    return timer.tokens / (timer.t1 - timer.t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "shakespeare_char_cpu.yaml"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--corpus", default=os.environ.get("TINY_SHAKESPEARE"), help="instead of the config's corpus")
    parser.add_argument("--batch_size", type=int, help="instead of the config's")
    parser.add_argument("--precision", help="instead of the config's (32-true for bf16 configs on a CPU)")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    if args.corpus:
        config.setdefault("data", {})["corpus"] = args.corpus
    if args.batch_size:
        config.setdefault("data", {})["batch_size"] = args.batch_size
    if args.precision:
        config.setdefault("trainer", {})["precision"] = args.precision

    bare, lightning = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(config, args.steps, args.warmup))
        lightning.append(lightning_loop(config, args.steps, args.warmup))
        print(f"bare {bare[-1]:,.0f} tok/s   lightning {lightning[-1]:,.0f} tok/s", flush=True)
    b, lt = max(bare), max(lightning)
    print(f"\nconfig {args.config}, {args.steps - args.warmup} timed steps, best of {args.repeats}")
    print(f"(medians: bare {statistics.median(bare):,.0f}, lightning {statistics.median(lightning):,.0f} tokens/s)")
    print(f"bare PyTorch loop : {b:>10,.0f} tokens/s")
    print(f"Lightning Trainer : {lt:>10,.0f} tokens/s")
    print(f"ratio             : {lt / b:.3f}")
    gpt_args = {k: v for k, v in config["model"].items() if k in FIELDS}
    flops_per_token = build_model(GPTConfig(**gpt_args, vocab_size=data(config).vocab_size)).flops_per_token()
    peak = matmul_peak_flops()
    print(f"MFU               : bare {flops_per_token * b / peak:.3f}, Lightning {flops_per_token * lt / peak:.3f}")
    print(f"  ({flops_per_token / 1e6:.2f} MFLOP a token; matmul peak {peak / 1e9:.0f} GFLOP/s, measured now)")


if __name__ == "__main__":
    main()
