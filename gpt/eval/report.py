"""How big a model is: parameters and memory, for a preset with any field changed.

    python -m gpt.eval.report --preset gpt2
    python -m gpt.eval.report --preset gpt2 --qkv_bias false      # 163,009,536 untied
    python -m gpt.eval.report --preset baby --pos rope --mlp swiglu
    python -m gpt.eval.report --preset gpt2-medium --lora.r 8         # fine-tuning: full vs LoRA
    python -m gpt.eval.report --help

The model is built on PyTorch's meta device: shapes without memory, so gpt2-xl counts
in a moment. Plain torch and jsonargparse, no Lightning.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from jsonargparse import ArgumentParser

from gpt.errors import exit_on_user_error
from gpt.model.config import GPTConfig
from gpt.model.lora import LoRASettings, apply_lora
from gpt.model.models import build_model

# Bytes per parameter while training with AdamW: weights, gradients, and AdamW's two
# moving averages (m and v). Lightning's bf16-mixed keeps all four in fp32 and only
# computes in bf16; bf16-true stores them all in bf16.
TRAIN_BYTES = {"32-true / bf16-mixed": 4 + 4 + 4 + 4, "bf16-true": 2 + 2 + 2 + 2}


def count(config: GPTConfig) -> dict[str, int]:
    """Parameters of the model config describes: total, without position embeddings
    (nanoGPT's and the GPT-2 paper's count), and without any embedding matrix (Kaplan et
    al.'s N: a tied LM head goes with the token embedding)."""
    with torch.device("meta"):
        model = build_model(config)
    embedding = {name: p.numel() for name, p in model.named_parameters() if name.endswith(("wte.weight", "wpe.weight"))}
    total = model.num_params()
    return {
        "total": total,
        "without position embeddings": model.num_params(non_embedding=True),
        "non-embedding": total - sum(embedding.values()),
    }


def report(config: GPTConfig) -> dict[str, dict[str, int]]:
    """count() with the weights tied and untied (the same model otherwise), and the memory
    each needs, in bytes."""
    variants = {
        "tied": dataclasses.replace(config, tie_weights=True),
        "untied": dataclasses.replace(config, tie_weights=False),
    }
    if config.arch != "gpt":  # the teaching models have one design, nothing to tie
        variants = {"": config}
    out = {}
    for name, variant in variants.items():
        counts = count(variant)
        n = counts["total"]
        memory = {"weights fp32": 4 * n, "weights bf16": 2 * n}
        memory |= {f"training {precision}": b * n for precision, b in TRAIN_BYTES.items()}
        out[name] = counts | memory
    return out


def finetuning(config: GPTConfig, lora: LoRASettings) -> dict[str, dict[str, int]]:
    """What trains, and the memory training holds (fp32 AdamW: weights, and for what trains its
    gradients and two moments), fine-tuning every weight or LoRA adapters only."""
    with torch.device("meta"):
        model = build_model(config)
        total = sum(p.numel() for p in model.parameters())
        apply_lora(model, lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out = {}
    for name, (n, t) in {"full": (total, total), f"LoRA r={lora.r}": (total + trainable, trainable)}.items():
        out[name] = {"parameters that train": t, "share that trains": t / total}
        out[name] |= {"training memory, fp32 AdamW": 4 * n + (4 + 8) * t}
    return out


# Dense peak FLOP/s of the GPUs large runs use, from NVIDIA's datasheets (the sparse figures
# are twice these; Lightning's table gives some of those): the ceiling MFU is a share of.
# H200 has H100 SXM's compute, with more and faster memory.
H100_SXM = {"bf16": 989e12, "fp16": 989e12, "tf32": 495e12, "fp32": 67e12}
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "a100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},  # SXM and PCIe alike
    "h100 sxm": H100_SXM,
    "h200": H100_SXM,
}


def gpu_chip(device_name: str) -> str | None:
    """PEAK_FLOPS' key for torch.cuda.get_device_name(), or None for a GPU not in it: "NVIDIA
    H100 80GB HBM3" is an H100 SXM (the PCIe and NVL cards are slower and not in the table)."""
    name = device_name.lower()
    if "h200" in name and "nvl" not in name:
        return "h200"
    if "h100" in name and ("hbm3" in name or "sxm" in name):
        return "h100 sxm"
    if "a100" in name:
        return "a100"
    return None


def gpu_peak_flops(device_name: str, dtype: str) -> float | None:
    """Datasheet FLOP/s of one GPU for dtype (bf16, fp16, tf32, fp32), or None when not in PEAK_FLOPS."""
    chip = gpu_chip(device_name)
    return PEAK_FLOPS[chip].get(dtype) if chip else None


_measured: dict[tuple[str, torch.dtype], float] = {}


def matmul_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a large square matmul on this device, measured (best of 4, about half a
    second on 2 CPU cores, once per process): the ceiling that MFU is a share of where no
    datasheet figure applies, as on a CPU. Smaller matmuls run slower (on 2 cores: 1024 at
    about 75% of 2048's rate), so this is the most a model's matmuls could reach."""
    device = torch.device(device)
    key = (str(device), dtype)
    if key not in _measured:
        # A CPU without native bf16 emulates it about 60x slower than fp32 at any size: a 512
        # matmul tells that rate in a second where 2048's would take a minute.
        n = 512 if device.type == "cpu" and dtype == torch.bfloat16 and cpu_bf16_slowdown() > 2 else 2048
        # Its own generator: measuring must not move the global random state a run resumes from.
        generator = torch.Generator(device).manual_seed(0)
        a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=generator) for _ in range(2))
        best = float("inf")
        for _ in range(4):
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        _measured[key] = 2 * n**3 / best
    return _measured[key]


_bf16_slowdown: list[float] = []


def cpu_bf16_slowdown() -> float:
    """How many times longer a 256 x 256 matmul takes in bf16 than in fp32 on this CPU (best of
    5 each, a few milliseconds, measured once per process): about 1 where the CPU has native
    bf16 (AVX512-BF16, AMX), about 60 where it has AVX2 only and bf16 is emulated."""
    if not _bf16_slowdown:
        generator = torch.Generator().manual_seed(0)  # its own: the global random state stays
        a = torch.randn(256, 256, generator=generator)
        seconds = {}
        for dtype in (torch.float32, torch.bfloat16):
            x = a.to(dtype)
            x @ x  # warm-up: the first call picks and prepares a kernel
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                x @ x
                best = min(best, time.perf_counter() - start)
            seconds[dtype] = best
        _bf16_slowdown.append(seconds[torch.bfloat16] / seconds[torch.float32])
    return _bf16_slowdown[0]


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def describe(config: GPTConfig) -> str:
    c = config
    text = f"arch {c.arch}: vocab {c.vocab_size}, context {c.block_size}"
    if c.arch != "bigram":
        text += f", {c.n_layer} layers x {c.n_embd} wide, {c.n_head} heads of {c.head_size}"
    if c.arch == "gpt":
        text += f"; {c.pos} positions, {c.mlp} MLP, {c.norm}, bias {c.bias}, qkv bias {c.attn_bias}"
    return text


def format_report(config: GPTConfig, lora: LoRASettings | None = None) -> str:
    table = report(config)
    columns = list(table)
    lines = [f"{config.preset or 'GPTConfig defaults'}: {describe(config)}", ""]
    width = 46
    if columns != [""]:
        lines.append(" " * width + "".join(f"{c:>16}" for c in columns))
    for key in table[columns[0]]:
        if key == "weights fp32":
            lines.append("memory (activations not included; they grow with batch x context)")
        values = [table[c][key] for c in columns]
        cells = [
            f"{v:,}" if key in ("total", "without position embeddings", "non-embedding") else human_bytes(v)
            for v in values
        ]
        lines.append(f"  {key:<{width - 2}}" + "".join(f"{v:>16}" for v in cells))
    lines.append("")
    lines.append("training = weights + gradients + AdamW's m and v: 16 bytes a parameter in fp32 and bf16-mixed")
    lines.append("(Lightning keeps fp32 master weights), 8 in bf16-true.")
    if lora is not None:
        lines += ["", f"fine-tuning: LoRA on {', '.join(lora.targets)}, alpha {lora.alpha:g}"]
        tuned = finetuning(config, lora)
        lines.append(" " * width + "".join(f"{c:>16}" for c in tuned))
        shown = {"parameters that train": "{:,}".format, "share that trains": "{:.2%}".format}
        for key in next(iter(tuned.values())):
            cells = [shown.get(key, human_bytes)(v[key]) for v in tuned.values()]
            lines.append(f"  {key:<{width - 2}}" + "".join(f"{c:>16}" for c in cells))
        lines.append("(activations come on top, alike for both: benchmarks/lora_memory.py measures the peak)")
    return "\n".join(lines)


def parser() -> ArgumentParser:
    """One option per GPTConfig field (--preset among them), documented as GPTConfig is."""
    p = ArgumentParser(prog="python -m gpt.eval.report", description=__doc__, allow_abbrev=False)
    p.add_class_arguments(GPTConfig)
    p.add_argument("--lora", type=LoRASettings | None, default=None, help="LoRA adapters: compare fine-tuning")
    return p


def main(args: list[str] | None = None) -> None:
    cfg = parser().parse_args(args).as_dict()
    lora = cfg.pop("lora")
    lora = LoRASettings(**{**lora, "targets": tuple(lora["targets"])}) if lora else None
    print(format_report(GPTConfig(**cfg), lora))


if __name__ == "__main__":
    exit_on_user_error(main)
