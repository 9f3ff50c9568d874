"""scripts/gpu_check.py, the script for a first GPU, run as its CPU dry run (tiny shapes, every
path a CPU has) so that it cannot rot before a GPU runs it."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT, shakespeare_file

pytestmark = pytest.mark.slow  # nine checks, each a short fit or decode (about 40 s, torch.compile's included)

CHECKS = (
    "fit bf16-mixed",
    "model.compile",
    "flash attention",
    "gradient accumulation",
    "DDP, 1 device",
    "FSDP, 1 device, sharded save + resume",
    "save + resume",
    "decode vs transformers",
    "baby to val <= 1.47",
)


def test_the_gpu_check_runs_every_cpu_path_and_prints_its_table(tmp_path):
    command = [sys.executable, str(ROOT / "scripts/gpu_check.py"), "--dry_run", "--corpus", str(shakespeare_file())]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [*command, "--out", "table.md"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in result.stdout.splitlines()[4:] if line}
    assert list(rows) == list(CHECKS)
    results = {name: cells[0] for name, cells in rows.items()}
    assert results == {name: "n/a" if "FSDP" in name or "baby" in name else "ok" for name in CHECKS}
    assert "fused AdamW" in rows["fit bf16-mixed"][1] and "flash_attention" in rows["flash attention"][1]
    accumulated, whole = (line.split(": ")[-1] for line in rows["gradient accumulation"][1].split("; "))
    assert abs(float(accumulated.removeprefix("val ")) - float(whole)) <= 1e-5  # 2 x 4 a step and 1 x 8: one model
    assert (tmp_path / "table.md").read_text() == result.stdout.rstrip() + "\n"


def test_a_failing_check_is_a_row_of_the_table_and_the_exit_status_says_so(tmp_path):
    command = [sys.executable, str(ROOT / "scripts/gpu_check.py"), "--dry_run", "--corpus", str(tmp_path / "none.txt")]
    skip = ["--skip", "compile", "flash", "accumulation", "ddp", "fsdp", "resume", "decode", "baby"]
    result = subprocess.run([*command, *skip], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "| fit bf16-mixed | FAIL | FileNotFoundError:" in result.stdout, result.stdout + result.stderr[-3000:]
