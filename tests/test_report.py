"""gpt/eval/report.py: parameters and memory of any model, and the command that prints them."""

import contextlib
import io
import subprocess

import torch
import torch.nn.functional as F

from gpt.eval.report import count, report
from gpt.model.config import GPTConfig
from gpt.model.models import GPT
from helpers import tiny_config


def run_report(*args: str) -> subprocess.CompletedProcess:
    """`python -m gpt.eval.report ARGS`, as its __main__ runs it, in this process."""
    from gpt.errors import exit_on_user_error
    from gpt.eval import report as command

    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exit_on_user_error(lambda: command.main(list(args)))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_report_command_gives_the_published_gpt2_counts():
    tied = run_report("--preset", "gpt2")
    assert tied.returncode == 0, tied.stderr
    assert "124,439,808" in tied.stdout  # GPT-2 small, tied, with qkv bias
    untied = run_report("--preset", "gpt2", "--qkv_bias", "false")
    total_line = next(line for line in untied.stdout.splitlines() if line.strip().startswith("total"))
    assert total_line.split()[-1] == "163,009,536"  # untied and without qkv bias


def test_report_command_refuses_an_unknown_preset():
    result = run_report("--preset", "gpt5")
    assert result.returncode != 0
    assert "unknown preset 'gpt5'; known presets: gpt2, gpt2-medium, gpt2-large, gpt2-xl, baby" in result.stderr


def test_counts_of_every_gpt2_size():
    # Kaplan's N for GPT-2 small is the familiar 85M; the others follow from the shapes.
    assert count(GPTConfig(preset="gpt2"))["non-embedding"] == 85_056_000
    totals = {name: count(GPTConfig(preset=name))["total"] for name in ("gpt2-medium", "gpt2-large", "gpt2-xl")}
    assert totals == {"gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}


def test_training_memory_is_what_adamw_really_holds():
    torch.manual_seed(0)
    config = tiny_config(tie_weights=False)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters())
    idx = torch.randint(0, 50, (2, 16))
    F.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
    optimizer.step()
    held = sum(p.numel() * p.element_size() + p.grad.numel() * p.grad.element_size() for p in model.parameters())
    held += sum(t.numel() * t.element_size() for s in optimizer.state.values() for k, t in s.items() if k != "step")
    assert report(config)["untied"]["training 32-true / bf16-mixed"] == held
    assert report(config)["untied"]["weights fp32"] == sum(p.numel() * 4 for p in model.parameters())


def test_report_has_an_option_for_every_model_setting():
    from gpt.model.config import FIELDS

    help_text = run_report("--help").stdout
    assert all(f"--{field}" in help_text for field in FIELDS)
    baby = run_report("--preset", "baby", "--pos", "rope", "--n_layer", "2")
    assert baby.returncode == 0, baby.stderr
    assert baby.stdout.startswith("baby: arch gpt: vocab 65, context 256, 2 layers x 384 wide, 6 heads of 64; rope")


def test_gpu_peak_flops_by_device_name():
    from gpt.eval.report import gpu_peak_flops

    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert gpu_peak_flops("NVIDIA A100-PCIE-40GB", "tf32") == 156e12
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3", "tf32") == 495e12
    assert gpu_peak_flops("NVIDIA H200", "bf16") == 989e12
    assert gpu_peak_flops("NVIDIA H200", "tf32") == 495e12
    # Not in our table (slower cards, other GPUs): the speed monitor asks Lightning's.
    assert gpu_peak_flops("NVIDIA H100 PCIe", "bf16") is None
    assert gpu_peak_flops("Tesla T4", "fp16") is None
