"""Every GPU path of the project, checked by one command that prints a table: the first minutes
on a new GPU tell what works, how fast, and what fails. (It has not run on a GPU yet: the
checks but baby's 5000 steps are meant to take a few minutes on an H100/H200.)

    python scripts/gpu_check.py                         # on a GPU: every check, then baby to val <= 1.47
    python scripts/gpu_check.py --skip baby             # every check but the 5000-step run
    python scripts/gpu_check.py --dry_run --out table.md  # tiny shapes, what a CPU can run (the tests do)

Each fit runs main.py's CLI in this process (`main.cli_main`), in a folder of its own under
--workdir, and is read back from its TensorBoard events:

- fit bf16-mixed: nanoGPT's baby GPT on Tiny Shakespeare; the loss falls and stays finite;
  tokens/s and MFU against the datasheet's dense peak (train/mfu); the optimizer fused AdamW
- model.compile: the same fit compiled, tokens/s against the eager one
- flash attention: the kernel SDPA picks, seen in torch's profiler
- gradient accumulation: half the batch twice a step (data.tokens_per_step) ends at the same
  validation loss as the whole batch
- DDP and FSDP on one device: the same fit under each strategy (FSDP saves its checkpoint
  sharded, a folder of shards, and a second fit resumes from it)
- save + resume: a fit resumed from its middle checkpoint logs the validation loss of the
  uninterrupted one at the end
- decode: tokens/s at batch 1 and 16, ours (KV cache) against transformers' `generate` on
  GPT-2-shaped random weights (the dry run: a tiny shape)
- peak memory of each check (torch.cuda.max_memory_allocated; on a CPU, the process's peak RSS)

A check that fails is a FAIL row with its error, the others still run; the exit status is 1 if
any failed. On a CPU (--dry_run, or no CUDA) the shapes are tiny and the GPU-only paths
(FSDP: Lightning needs CUDA for it; bf16 speed; the long run) are marked "n/a on a CPU".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import main as gpt_main  # noqa: E402
from gpt.files import write_text  # noqa: E402
from gpt.interop.hf import hf_config, hf_state_dict  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.generation import generate  # noqa: E402
from gpt.model.models import GPT  # noqa: E402

CUDA = torch.cuda.is_available()
CHECKS = ("bf16", "compile", "flash", "accumulation", "ddp", "fsdp", "resume", "decode", "baby")
QUIET = "--trainer.enable_progress_bar false --trainer.enable_model_summary false --model.val_sample_tokens 0"


def fit_args(dry: bool, corpus: str | None, data_dir: Path) -> list[str]:
    """A short fit of baby (on a GPU) or a tiny GPT (dry run), validating twice."""
    if dry:
        shape = "--model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.block_size 32 --data.batch_size 8"
        shape += " --model.learning_rate 1e-2"
        run = "--trainer.max_steps 40 --trainer.val_check_interval 20 --trainer.limit_val_batches 4"
    else:
        shape = "--model.preset baby --data.batch_size 64"
        run = "--trainer.max_steps 300 --trainer.val_check_interval 150 --trainer.limit_val_batches 50"
    args = [*QUIET.split(), *shape.split(), *run.split(), "--trainer.log_every_n_steps", "5"]
    args += ["--trainer.precision", "bf16-mixed", "--data.data_dir", str(data_dir)]
    return args + (["--data.corpus", corpus] if corpus else [])


def fit(folder: Path, args: list[str]) -> tuple[gpt_main.GPTCLI, Path]:
    """`python main.py fit ARGS` in this process, in folder: the CLI and its run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    before = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cli = gpt_main.cli_main(["fit", *args])
        return cli, Path(cli.trainer.logger.log_dir).resolve()
    finally:
        os.chdir(before)


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


def speed(run: Path) -> float:
    """The median tokens/s a fit logged, leaving out the first (warm-up, compilation) values."""
    values = [v for _, v in scalars(run, "train/tokens_per_sec")]
    return median(values[len(values) // 3 :])


class Checks:
    def __init__(self, dry: bool, corpus: str | None, workdir: Path):
        self.dry, self.workdir, self.corpus = dry, workdir, corpus
        self.args = fit_args(dry, corpus, workdir / "data")
        self.eager: Path | None = None  # the plain bf16 fit, which the others are compared with

    def fit_bf16(self) -> str:
        cli, self.eager = fit(self.workdir / "bf16", self.args)
        losses = [v for _, v in scalars(self.eager, "train/loss")]
        assert losses and all(math.isfinite(v) for v in losses), f"a loss is not finite: {losses}"
        assert losses[-1] < losses[0] - (0.25 if self.dry else 1.0), (
            f"the loss did not fall: {losses[0]:.3f} -> {losses[-1]:.3f}"
        )
        optimizer = cli.trainer.optimizers[0]
        assert optimizer.defaults.get("fused"), f"AdamW is not fused: {optimizer.defaults}"
        mfu = median([v for _, v in scalars(self.eager, "train/mfu")][1:])
        return (
            f"loss {losses[0]:.2f} -> {losses[-1]:.2f}, {speed(self.eager):,.0f} tok/s, MFU {mfu:.1%}, "
            f"fused AdamW, {cli.trainer.precision}"
        )

    def baseline(self) -> Path:
        if self.eager is None:
            self.fit_bf16()
        return self.eager

    def compiled(self) -> str:
        run = fit(self.workdir / "compile", [*self.args, "--model.compile", "true"])[1]
        val = scalars(run, "val/loss")[-1][1]
        eager_val = scalars(self.baseline(), "val/loss")[-1][1]
        assert abs(val - eager_val) < 0.05, f"val {val:.4f} compiled vs {eager_val:.4f} eager"
        return (
            f"{speed(run):,.0f} tok/s compiled vs {speed(self.baseline()):,.0f} eager; val {val:.4f} vs {eager_val:.4f}"
        )

    def flash_attention(self) -> str:
        config = GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=65, dropout=0.0)
        model = GPT(config).to("cuda" if CUDA else "cpu")
        x = torch.randint(0, 65, (4, 64), device=next(model.parameters()).device)
        dtype = torch.bfloat16 if CUDA else torch.float32
        with torch.profiler.profile() as profile, torch.autocast(x.device.type, dtype, enabled=CUDA):
            model(x).float().sum().backward()
        kernels = sorted({e.key for e in profile.key_averages() if "scaled_dot_product" in e.key})
        assert any("flash" in k for k in kernels), f"SDPA ran {kernels}, not the flash kernel"
        return ", ".join(k.removeprefix("aten::") for k in kernels)

    def accumulation(self) -> str:
        """In fp32 (bf16 rounds a half batch's matmuls differently): the same sums, the same model."""
        batch, block = int(self.args[self.args.index("--data.batch_size") + 1]), 32 if self.dry else 256
        fp32 = [*self.args, "--trainer.precision", "32-true", "--model.tf32", "false"]
        val_batches = 2 * int(self.args[self.args.index("--trainer.limit_val_batches") + 1])  # the same windows
        half = [*fp32, "--data.batch_size", str(batch // 2), "--data.tokens_per_step", str(batch * block)]
        half += ["--trainer.limit_val_batches", str(val_batches)]
        whole = scalars(fit(self.workdir / "accumulate", fp32)[1], "val/loss")[-1][1]
        val = scalars(fit(self.workdir / "accumulate", half)[1], "val/loss")[-1][1]
        tolerance = 1e-2 if CUDA else 1e-5  # a GPU's kernels sum in another order
        assert abs(val - whole) <= tolerance, f"val {val:.6f} with 2 micro-batches vs {whole:.6f} with one"
        return f"fp32, 2 x {batch // 2} a step: val {val:.6f}; 1 x {batch}: {whole:.6f}"

    def ddp(self) -> str:
        args = [*self.args, "--trainer.strategy", "ddp", "--trainer.devices", "1"]
        run = fit(self.workdir / "ddp", args)[1]
        val, whole = scalars(run, "val/loss")[-1][1], scalars(self.baseline(), "val/loss")[-1][1]
        assert abs(val - whole) < 0.02, f"val {val:.4f} under DDP vs {whole:.4f}"
        return f"val {val:.4f} (one process without DDP: {whole:.4f})"

    def fsdp(self) -> str:
        if not CUDA:
            return "n/a on a CPU (Lightning's FSDP needs CUDA)"
        strategy = (
            '{"class_path": "lightning.pytorch.strategies.FSDPStrategy", "init_args": '
            '{"auto_wrap_policy": ["gpt.model.layers.Block"], "state_dict_type": "sharded"}}'
        )
        args = [*self.args, "--trainer.strategy", strategy, "--trainer.devices", "1", "--checkpoint.save_top_k", "-1"]
        run = fit(self.workdir / "fsdp", args)[1]
        val, whole = scalars(run, "val/loss")[-1][1], scalars(self.baseline(), "val/loss")[-1][1]
        assert abs(val - whole) < 0.02, f"val {val:.4f} under FSDP vs {whole:.4f}"
        middle = next(p for p in (run / "checkpoints").glob("step*") if int(p.name[4:].split("-")[0]) < 200)
        assert middle.is_dir() and any(middle.glob("*.distcp")), f"{middle} is not a sharded checkpoint"
        resumed = fit(self.workdir / "fsdp", [*args, "--ckpt_path", str(middle)])[1]
        again = scalars(resumed, "val/loss")[-1][1]
        assert abs(again - val) < 1e-3, f"resumed from the sharded {middle.name}: val {again:.4f} vs {val:.4f}"
        return f"val {val:.4f} (without: {whole:.4f}); resumed from sharded {middle.name}: {again:.4f}"

    def save_resume(self) -> str:
        args = [*self.args, "--checkpoint.save_top_k", "-1"]
        run = fit(self.workdir / "resume", args)[1]
        middle = min((run / "checkpoints").glob("step*"), key=lambda p: int(p.name[4:].split("-")[0]))
        resumed = fit(self.workdir / "resume", [*args, "--ckpt_path", str(middle)])[1]
        (step, val), (step2, again) = scalars(run, "val/loss")[-1], scalars(resumed, "val/loss")[-1]
        tolerance = 1e-3 if CUDA else 0.0  # a CPU repeats itself to the bit; a GPU's kernels may not
        assert step == step2 and abs(again - val) <= tolerance, f"step {step}: {val!r}, resumed: step {step2} {again!r}"
        return f"from {middle.name}: the last val {again:.6f}, uninterrupted {val:.6f}"

    def decode(self) -> str:
        from transformers import GPT2Config, GPT2LMHeadModel

        device, dtype = ("cuda", torch.bfloat16) if CUDA else ("cpu", torch.float32)
        torch.manual_seed(0)
        config = dict(n_layer=2, n_head=2, n_embd=64, block_size=128) if self.dry else dict(preset="gpt2")
        model = GPT(GPTConfig(**config, dropout=0.0, vocab_size=50257, bias=True)).eval()
        hf = GPT2LMHeadModel(GPT2Config(**hf_config(model.config))).eval()
        hf.transformer.load_state_dict(hf_state_dict(model), strict=False)
        hf.tie_weights()
        model, hf = model.to(device, dtype), hf.to(device, dtype)
        n = 32 if self.dry else 200
        rows = []
        for batch in (1, 16):
            prompt = torch.randint(0, 50257, (batch, 8), device=device, generator=None)
            ours = timed(lambda: generate(model, prompt, n, temperature=0))
            with torch.no_grad():
                theirs = timed(lambda: hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False))
            rows.append(f"b{batch}: {n * batch / ours:,.0f} vs HF {n * batch / theirs:,.0f} tok/s")
        return "; ".join(rows)


def timed(fn, repeats: int = 2) -> float:
    """The best of `repeats` timings of fn() after one warm-up, the GPU's work included."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if CUDA:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if CUDA:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory() -> str:
    if CUDA:
        return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB RSS"


def baby_to_target(corpus: str | None, workdir: Path) -> str:
    """configs/shakespeare_char.yaml as a user runs it: its wall time and final validation loss."""
    args = ["--config", str(ROOT / "configs/shakespeare_char.yaml"), *QUIET.split(), "--model.compile", "true"]
    args += ["--data.data_dir", str(workdir / "data"), *(["--data.corpus", corpus] if corpus else [])]
    start = time.perf_counter()
    run = fit(workdir / "baby", args)[1]
    minutes, val = (time.perf_counter() - start) / 60, scalars(run, "val/loss")[-1][1]
    assert val <= 1.47, f"val {val:.4f} after {minutes:.1f} min, nanoGPT's 1.47 not reached"
    return f"val {val:.4f} in {minutes:.1f} min (nanoGPT: about 1.47 in 3 min on an A100)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry_run", action="store_true", help="tiny shapes (the default without CUDA)")
    parser.add_argument("--skip", nargs="*", default=[], choices=CHECKS, help="checks to leave out")
    parser.add_argument("--corpus", default=None, help="Tiny Shakespeare's file (default: data/, else downloaded)")
    parser.add_argument("--workdir", default="gpu_check", help="where the fits write their run folders")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    a = parser.parse_args()
    dry = a.dry_run or not CUDA
    workdir = Path(a.workdir).resolve()
    checks = Checks(dry, a.corpus and str(Path(a.corpus).resolve()), workdir)
    device = torch.cuda.get_device_name() if CUDA else "CPU (dry run: tiny shapes)"
    table = [f"gpu_check on {device}, torch {torch.__version__}\n", "| check | result | figures | peak memory | s |"]
    table.append("| --- | --- | --- | --- | --- |")
    named = {
        "bf16": ("fit bf16-mixed", checks.fit_bf16),
        "compile": ("model.compile", checks.compiled),
        "flash": ("flash attention", checks.flash_attention),
        "accumulation": ("gradient accumulation", checks.accumulation),
        "ddp": ("DDP, 1 device", checks.ddp),
        "fsdp": ("FSDP, 1 device, sharded save + resume", checks.fsdp),
        "resume": ("save + resume", checks.save_resume),
        "decode": ("decode vs transformers", checks.decode),
        "baby": ("baby to val <= 1.47", lambda: "n/a on a CPU" if dry else baby_to_target(checks.corpus, workdir)),
    }
    failed = 0
    for name, check in (named[key] for key in CHECKS if key not in a.skip):
        if CUDA:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            result, figures = "ok", check()
            result = "n/a" if figures.startswith("n/a") else result
        except Exception as e:  # a failing path is a row of the table; the others still run
            result, figures, failed = "FAIL", f"{type(e).__name__}: {e}".replace("\n", " ")[:300], failed + 1
            traceback.print_exc()
        row = f"| {name} | {result} | {figures} | {peak_memory()} | {time.perf_counter() - start:.0f} |"
        print(row, file=sys.stderr, flush=True)
        table.append(row)
    text = "\n".join(table) + "\n"
    print(text)
    if a.out:
        write_text(a.out, text)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
