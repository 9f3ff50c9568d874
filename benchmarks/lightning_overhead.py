"""Lightning's overhead: the same model on the same batches, under Trainer and in a bare loop.

    python benchmarks/lightning_overhead.py [--config configs/shakespeare_char_cpu.yaml]
        [--steps 200] [--warmup 20] [--repeats 3]

Both runs build the model from the config with the same seed, feed the same DataLoader
(the config's batch size, block size and corpus), use the same AdamW groups, learning-rate
schedule and gradient clipping, and time the steps after `warmup`. The Trainer run keeps
what `main.py fit` runs (TensorBoard logger, the LR and throughput monitors, logging every
log_every_n_steps) except validation and checkpoints, which the bare loop does not do.
Runs alternate so that a slow spell of the machine hits both, and each side reports its
best run: on a shared machine interference only ever slows a run down, so the fastest run
is the closest to the code's own speed. Prints tokens/s and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger

from gpt.callbacks import TokenThroughputMonitor
from gpt.datamodule import GPTDataModule
from gpt.lit_module import LitGPT, cosine_lr, param_groups
from gpt.tokenizers import TokenizerConfig

ROOT = Path(__file__).resolve().parents[1]


def build(config: dict, seed: int = 1337) -> tuple[LitGPT, GPTDataModule]:
    model_args = dict(config.get("model", {}))
    data_args = dict(config.get("data", {}), block_size=model_args.get("block_size", 256))
    if "tokenizer" in data_args:
        data_args["tokenizer"] = TokenizerConfig(**data_args["tokenizer"])
    dm = GPTDataModule(**data_args)
    dm.prepare_data()
    dm.setup("fit")
    L.seed_everything(seed, verbose=False)
    module = LitGPT(vocab_size=dm.vocab_size, **model_args)
    return module, dm


def bare_loop(config: dict, steps: int, warmup: int) -> float:
    module, dm = build(config)
    model = module.model.train()
    hp = module.hparams
    optimizer = torch.optim.AdamW(
        param_groups(model, hp.weight_decay), lr=hp.learning_rate, betas=(hp.beta1, hp.beta2)
    )
    clip = config.get("trainer", {}).get("gradient_clip_val")
    batches = iter(dm.train_dataloader())
    tokens = 0
    for step in range(steps):
        if step == warmup:
            t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, hp.learning_rate, hp.min_lr, hp.warmup_steps, steps)
        x, y = next(batches)
        loss = module.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
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


def lightning_loop(config: dict, steps: int, warmup: int) -> float:
    module, dm = build(config)
    trainer_cfg = config.get("trainer", {})
    timer = _Timer(warmup)
    with tempfile.TemporaryDirectory() as logdir:
        trainer = L.Trainer(
            accelerator="cpu", devices=1, precision=trainer_cfg.get("precision", "32-true"),
            max_steps=steps, limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, log_every_n_steps=trainer_cfg.get("log_every_n_steps", 50),
            gradient_clip_val=trainer_cfg.get("gradient_clip_val"), logger=TensorBoardLogger(logdir),
            callbacks=[LearningRateMonitor(logging_interval="step"), TokenThroughputMonitor(), timer],
        )  # fmt: skip
        trainer.fit(module, datamodule=dm)
    return timer.tokens / (timer.t1 - timer.t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "shakespeare_char_cpu.yaml"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())

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


if __name__ == "__main__":
    main()
