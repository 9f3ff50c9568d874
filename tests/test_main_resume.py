"""main.py fit, interrupted and resumed as a user's runs are: signals at several points, a
killed process, DDP, --ckpt_path last and best, and settings changed on resume. A resumed
run must log what an uninterrupted one logs, to the last bit."""

import math
import re
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gpt.interop.checkpoint import newest_last
from gpt.model.optim import cosine_lr
from gpt.train.runs import hold_run
from helpers import LINES_TEXT, ROOT, SPEECHES_TEXT, assert_clean_error, main_here, run_main, scalars

pytestmark = pytest.mark.slow  # fits interrupted, killed and resumed through the CLI, DDP among them

TAGS = ("train/loss", "val/loss", "train/lr", "train/tokens", "val/best_loss")
FIT = (
    "fit --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.block_size 32 --model.dropout 0.1 "
    "--model.val_sample_tokens 0 --trainer.enable_progress_bar false --trainer.enable_model_summary false "
    "--seed_everything 1 --data.batch_size 8 --model.warmup_steps 4 --trainer.max_steps 14 "
    "--trainer.val_check_interval 6 --trainer.log_every_n_steps 1"
).split()
DATA = {
    "windows": "--data.corpus lines.txt".split(),
    "masked paragraphs": "--data.corpus speeches.txt --data.mode paragraphs --model.objective masked".split(),
    "lines": "--data.corpus lines.txt --data.mode lines".split(),
    # 2 micro-batches of 4 a step (4 x 32 tokens x 2 = 256): a signal never splits a step
    "accumulated": "--data.corpus lines.txt --data.batch_size 4 --data.tokens_per_step 256".split(),
    # a corpus of documents: parquet -> shards (2 training shards), windows that never span two
    "shards": "--data.corpus docs --data.shard_tokens 3000 --data.val_tokens 500".split(),
}
TESTS_ON_PATH = {"PYTHONPATH": str(ROOT / "tests")}  # for helpers.SignalAtStep


def workdir(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "lines.txt").write_text(LINES_TEXT)
    (path / "speeches.txt").write_text(SPEECHES_TEXT)
    (path / "docs").mkdir(exist_ok=True)
    lines = LINES_TEXT.splitlines(keepends=True)
    pq.write_table(pa.table({"text": lines[: len(lines) // 2]}), path / "docs" / "0.parquet")
    pq.write_table(pa.table({"text": lines[len(lines) // 2 :]}), path / "docs" / "1.parquet")
    return path


def logged(folder) -> dict:
    """What a run logged, as TensorBoard shows it (events after a purge step hidden)."""
    return {tag: scalars(folder / "lightning_logs" / "version_0", tag) for tag in TAGS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """What each kind of data logs when nothing stops the run."""
    runs = {}
    for name, data in DATA.items():
        folder = workdir(tmp_path_factory.mktemp("uninterrupted"))
        result = main_here(*FIT, *data, cwd=folder)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = logged(folder)
    return runs


def signal_at(step: int, **options) -> list[str]:
    args = ["--trainer.callbacks+=helpers.SignalAtStep", "--trainer.callbacks.step", str(step)]
    return args + [a for k, v in options.items() for a in (f"--trainer.callbacks.{k}", str(v))]


@pytest.mark.parametrize(
    "data, step, options, code, saved_step",
    [
        ("windows", 4, {}, 143, 5),  # during step 5, in the middle of the epoch
        ("windows", 5, {}, 143, 6),  # a step that ends with a validation
        ("windows", 6, {"when": "validation"}, 143, 6),  # during that validation
        ("windows", 8, {"signum": 2}, 130, 9),  # Ctrl-C
        ("masked paragraphs", 5, {}, 143, 6),  # the last step of an epoch (6 batches of speeches), and a validation
        ("masked paragraphs", 8, {}, 143, 9),
        ("lines", 2, {}, 143, 3),
        ("accumulated", 4, {}, 143, 5),
        ("shards", 4, {}, 143, 5),  # sent at the first micro-batch of step 5: saved after its second
    ],
)
def test_interrupted_and_resumed_logs_what_an_uninterrupted_run_logs(
    uninterrupted, tmp_path, data, step, options, code, saved_step
):
    folder = workdir(tmp_path)
    stopped = main_here(*FIT, *DATA[data], *signal_at(step, **options), cwd=folder)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    name = "SIGINT" if code == 130 else "SIGTERM"
    saved = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
    line = f"{name} at step {saved_step}: saved {saved.relative_to(folder)}; resume with: python main.py"
    assert line in stopped.stderr and stopped.stderr.rstrip().endswith("--ckpt_path last")
    assert "Traceback" not in stopped.stderr
    assert torch.load(saved, weights_only=True)["global_step"] == saved_step
    resumed = main_here(*FIT, *DATA[data], "--ckpt_path", "last", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "--ckpt_path last: lightning_logs/version_0/checkpoints/last.ckpt" in resumed.stderr
    assert logged(folder) == uninterrupted[data]  # every value, bit for bit, at the same steps
    assert not (folder / "lightning_logs" / "version_1").exists()  # one run, one folder


def test_killed_outright_resumes_from_its_last_validation(uninterrupted, tmp_path):
    folder = workdir(tmp_path)
    killed = run_main(*FIT, *DATA["windows"], *signal_at(9, signum=9), cwd=folder, env=TESTS_ON_PATH)
    assert killed.returncode == -signal.SIGKILL  # no chance to save: the checkpoint of step 6 remains
    assert torch.load(folder / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
    resumed = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged(folder) == uninterrupted["windows"]  # steps 7-9, logged twice, show once


def checkpoint_steps(folder) -> dict[str, int]:
    return {p.name: torch.load(p, weights_only=True)["global_step"] for p in folder.rglob("*.ckpt")}


def test_last_follows_the_run_when_validation_gets_worse_and_a_kill_loses_nothing_after_it(tmp_path):
    # The loss falls, so with mode max every validation after the first counts as worse: the
    # best checkpoint stays at step 6, as it would in a run that overfits from there on.
    worse = ["--checkpoint.mode", "max"]
    reference = workdir(tmp_path / "reference")
    assert main_here(*FIT, *DATA["windows"], *worse, cwd=reference).returncode == 0
    (best,) = [name for name in checkpoint_steps(reference) if name != "last.ckpt"]
    assert checkpoint_steps(reference) == {best: 6, "last.ckpt": 14}  # validated at 6, 12, 14, best at 6
    folder = workdir(tmp_path / "killed")
    args = [*FIT, *DATA["windows"], *worse, *signal_at(13, signum=9)]
    assert run_main(*args, cwd=folder, env=TESTS_ON_PATH).returncode == -signal.SIGKILL  # as step 14 begins
    assert checkpoint_steps(folder) == {best: 6, "last.ckpt": 12}  # the latest validation, not the best
    resumed = main_here(*FIT, *DATA["windows"], *worse, "--ckpt_path", "last", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged(folder) == logged(reference)  # steps 13 and 14 trained again, 7-12 not


def test_a_checkpoint_every_interval_of_training_whatever_validation_does(tmp_path):
    every_step = [*"--trainer.val_check_interval 100 --checkpoint.train_time_interval 0:00:00".split()]
    reference = workdir(tmp_path / "reference")
    assert main_here(*FIT, *DATA["windows"], *every_step, cwd=reference).returncode == 0
    folder = workdir(tmp_path / "killed")
    killed = run_main(*FIT, *DATA["windows"], *every_step, *signal_at(9, signum=9), cwd=folder, env=TESTS_ON_PATH)
    assert killed.returncode == -signal.SIGKILL
    assert checkpoint_steps(folder) == {"last.ckpt": 9}  # no validation yet: saved by time, after step 9
    resumed = main_here(*FIT, *DATA["windows"], *every_step, "--ckpt_path", "last", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged(folder) == logged(reference)  # exact from a checkpoint taken between validations


def test_a_second_signal_aborts_at_once(tmp_path):
    folder = workdir(tmp_path)
    result = run_main(*FIT, *DATA["windows"], *signal_at(3, times=2), cwd=folder, env=TESTS_ON_PATH)
    assert result.returncode == -signal.SIGTERM  # killed by the second signal
    assert "saved" not in result.stderr
    assert not list(folder.rglob("*.ckpt"))  # nothing saved, nothing half-written


def test_a_real_sigterm_from_outside(tmp_path):
    """SIGTERM from another process at whatever step the run has reached."""
    longer = [*FIT, *DATA["windows"], *"--trainer.max_steps 90 --trainer.val_check_interval 30".split()]
    reference = workdir(tmp_path / "reference")
    assert main_here(*longer, cwd=reference).returncode == 0
    folder = workdir(tmp_path / "interrupted")
    command = [sys.executable, str(ROOT / "main.py"), *longer]
    process = subprocess.Popen(command, cwd=folder, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    for line in process.stderr:  # training has begun once AdamW is set up
        lines.append(line)
        if line.startswith("AdamW:"):
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            break
    stderr = "".join(lines) + process.stderr.read()
    assert process.wait(timeout=120) == 143, stderr[-3000:]
    step = int(stderr.split("SIGTERM at step ")[1].split(":")[0])
    assert 1 <= step < 90
    resumed = main_here(*longer, "--ckpt_path", "last", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged(folder) == logged(reference)


def test_ddp_ranks_stop_after_the_same_step_whichever_gets_the_signal(tmp_path):
    ddp = "--trainer.strategy ddp --trainer.devices 2 --trainer.accelerator cpu --data.batch_size 4".split()
    reference = workdir(tmp_path / "reference")
    assert run_main(*FIT, *DATA["windows"], *ddp, cwd=reference).returncode == 0
    folder = workdir(tmp_path / "interrupted")
    stopped = run_main(*FIT, *DATA["windows"], *ddp, *signal_at(4, rank=1), cwd=folder, env=TESTS_ON_PATH)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert stopped.stderr.count("SIGTERM at step 5: saved") == 1  # one line for the run
    resumed = run_main(*FIT, *DATA["windows"], *ddp, "--ckpt_path", "last", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged(folder) == logged(reference)


# ---- which checkpoint, and what a resumed run may change


def stopped_at_step(folder, step: int = 5) -> None:
    result = main_here(*FIT, *DATA["windows"], *signal_at(step - 1), cwd=folder)
    assert result.returncode == 143, result.stderr[-3000:]


def test_last_is_the_newest_run_with_a_last_checkpoint_and_best_its_best(tmp_path):
    folder = workdir(tmp_path)
    for _ in range(2):
        assert main_here(*FIT, *DATA["windows"], "--trainer.max_steps", "6", cwd=folder).returncode == 0
    (folder / "lightning_logs" / "version_2").mkdir()  # a run that stopped before saving anything
    result = main_here("validate", "--ckpt_path", "last", *DATA["windows"], cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--ckpt_path last: lightning_logs/version_1/checkpoints/last.ckpt" in result.stderr
    best = main_here("validate", "--ckpt_path", "best", *DATA["windows"], cwd=folder)
    assert best.returncode == 0, best.stderr[-3000:]
    (best_file,) = (folder / "lightning_logs/version_1/checkpoints").glob("step*.ckpt")
    assert f"--ckpt_path best: lightning_logs/version_1/checkpoints/{best_file.name}" in best.stderr


def test_last_finds_the_run_of_the_config_named(tmp_path):
    folder = workdir(tmp_path)
    (folder / "configs").mkdir()
    (folder / "configs" / "small.yaml").write_text("trainer:\n  max_steps: 6\n")
    assert main_here(*FIT, *DATA["windows"], "--config", "configs/small.yaml", cwd=folder).returncode == 0
    assert (folder / "lightning_logs/small/version_0/checkpoints/last.ckpt").is_file()
    config = ["--config", "configs/small.yaml"]
    predict = main_here("predict", *config, "--ckpt_path", "last", "--model.sampling.max_new_tokens", "5", cwd=folder)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert "--ckpt_path last: lightning_logs/small/version_0/checkpoints/last.ckpt" in predict.stderr
    other = main_here("predict", "--ckpt_path", "last", cwd=folder)  # no config: which run is meant?
    assert_clean_error(
        other,
        "--ckpt_path last: lightning_logs/ holds no runs itself but folders of runs: small; --ckpt_path last needs "
        "the --config the run was trained with, e.g. --config configs/small.yaml",
    )


def test_no_run_to_resume_and_no_checkpoint_to_predict_from(tmp_path):
    folder = workdir(tmp_path)
    assert_clean_error(
        main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", cwd=folder),
        "--ckpt_path last: there are no runs in lightning_logs/ yet (is it the --config you trained with?); "
        "start a new run without --ckpt_path",
    )
    for subcommand in ("validate", "test", "predict"):
        result = main_here(subcommand, *DATA["windows"], cwd=folder)
        assert_clean_error(result, f"{subcommand} needs a trained model: --ckpt_path PATH, or --ckpt_path last")
    tiny = "--model.n_layer 1 --model.n_head 2 --model.n_embd 16 --model.block_size 32".split()
    untrained = main_here("validate", "--ckpt_path", "untrained", *DATA["windows"], *tiny, cwd=folder)
    assert untrained.returncode == 0, untrained.stderr[-3000:]  # asked for explicitly
    loss = float(re.search(r"val/loss\W+([\d.]+)", untrained.stdout).group(1))
    assert loss == pytest.approx(math.log(len(set(LINES_TEXT))), abs=0.05)  # a model that learned nothing


def test_a_new_learning_rate_takes_effect_and_the_shape_cannot_change(tmp_path):
    folder = workdir(tmp_path)
    stopped_at_step(folder, 5)
    arch = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", "--model.n_layer", "3", cwd=folder)
    assert_clean_error(arch, "--model.n_layer gives n_layer 3 but the checkpoint's model has 2")
    resumed = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", "--model.learning_rate", "5e-4", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming with learning_rate 0.0005 (the checkpoint's run had 0.001)" in resumed.stderr
    lr = dict(scalars(folder / "lightning_logs" / "version_0", "train/lr"))
    assert lr[4] == pytest.approx(cosine_lr(4, 1e-3, 1e-4, 4, 14))  # before: the old rate
    assert [lr[s] for s in range(5, 14)] == pytest.approx([cosine_lr(s, 5e-4, 1e-4, 4, 14) for s in range(5, 14)])


def test_one_fit_at_a_time_writes_a_run(tmp_path):
    folder = workdir(tmp_path)
    stopped_at_step(folder, 5)
    with hold_run(folder / "lightning_logs" / "version_0"):  # as a fit still running would
        second = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", cwd=folder)
    assert_clean_error(second, "lightning_logs/version_0 is being written by another fit that is still running")
    failed = main_here(*FIT, "--data.corpus", "missing.txt", cwd=folder)
    assert_clean_error(failed, "corpus file 'missing.txt' does not exist")
    assert sorted(p.name for p in (folder / "lightning_logs").iterdir()) == ["version_0"]  # no empty version_1


def test_the_last_step_is_validated_and_saved_wherever_it_falls(tmp_path):
    folder, run = workdir(tmp_path), tmp_path / "lightning_logs" / "version_0"
    assert main_here(*FIT, *DATA["windows"], cwd=folder).returncode == 0  # 14 steps, validating every 6
    assert [step for step, _ in scalars(run, "val/loss")] == [5, 11, 13]  # TensorBoard's steps count from 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 14
    more = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", "--trainer.max_steps", "17", cwd=folder)
    assert more.returncode == 0, more.stderr[-3000:]
    assert [step for step, _ in scalars(run, "train/loss")] == list(range(17))  # one value a step, none twice
    assert [step for step, _ in scalars(run, "val/loss")] == [5, 11, 13, 16]


def test_raising_max_steps_keeps_the_schedule_unless_decay_steps_says_otherwise(tmp_path):
    folder = workdir(tmp_path)
    assert main_here(*FIT, *DATA["windows"], cwd=folder).returncode == 0  # 14 steps: the cosine ends at min_lr
    done = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: the checkpoint is at step 14 and --trainer.max_steps is 14: nothing to train" in done.stderr
    longer = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", "--trainer.max_steps", "18", cwd=folder)
    assert longer.returncode == 0, longer.stderr[-3000:]
    lr = dict(scalars(folder / "lightning_logs" / "version_0", "train/lr"))
    assert [lr[s] for s in range(14, 18)] == pytest.approx([1e-4] * 4)  # on at min_lr
    stretch = "--ckpt_path last --trainer.max_steps 22 --model.decay_steps 30".split()
    stretched = main_here(*FIT, *DATA["windows"], *stretch, cwd=folder)
    assert stretched.returncode == 0, stretched.stderr[-3000:]
    assert "resuming with decay_steps 30 (the checkpoint's run had 14)" in stretched.stderr
    lr = dict(scalars(folder / "lightning_logs" / "version_0", "train/lr"))
    assert [lr[s] for s in range(18, 22)] == pytest.approx([cosine_lr(s, 1e-3, 1e-4, 4, 30) for s in range(18, 22)])


def test_weights_only_cannot_be_turned_off(tmp_path):
    result = main_here("validate", "--ckpt_path", "x.ckpt", "--weights_only", "false", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: unknown option --weights_only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2 and "Traceback" not in result.stderr  # no page of usage
    assert "--weights_only" not in main_here("fit", "--help", cwd=tmp_path).stdout


def shard(checkpoint_file, folder):
    """The checkpoint as FSDP's state_dict_type="sharded" writes it (Lightning's FSDPStrategy): a
    folder of torch.distributed.checkpoint shards ("model", "optimizer_0") and meta.pt, the rest.
    (FSDP itself needs CUDA: torch refuses it on a CPU; scripts/gpu_check.py runs the real one.)"""
    import torch.distributed.checkpoint as dcp

    checkpoint = torch.load(checkpoint_file, weights_only=True)
    state = {"model": checkpoint.pop("state_dict"), "optimizer_0": checkpoint.pop("optimizer_states")[0]}
    dcp.save(state, checkpoint_id=folder)
    torch.save(checkpoint, folder / "meta.pt")


def test_a_sharded_checkpoint_resumes_under_fsdp_and_is_joined_for_anything_else(tmp_path):
    folder = workdir(tmp_path)
    assert main_here(*FIT, *DATA["windows"], cwd=folder).returncode == 0
    checkpoints = folder / "lightning_logs/version_0/checkpoints"
    (checkpoints / "last.ckpt").rename(checkpoints / "whole.ckpt")
    shard(checkpoints / "whole.ckpt", checkpoints / "last.ckpt")
    # --ckpt_path last finds the folder and reads its settings; this CPU run has no FSDP to read the shards
    resumed = main_here(*FIT, *DATA["windows"], "--ckpt_path", "last", "--trainer.max_steps", "20", cwd=folder)
    assert_clean_error(resumed, "checkpoint 'lightning_logs/version_0/checkpoints/last.ckpt' is sharded")
    assert "consolidate_checkpoint" in resumed.stderr
    args = ["--data.prompt", "All:", "--model.sampling.max_new_tokens", "20", "--model.sampling.temperature", "0"]
    refused = main_here("predict", "--ckpt_path", str(checkpoints / "last.ckpt"), *args, cwd=folder)
    assert_clean_error(
        refused, "join it into one file first: python -m lightning.pytorch.utilities.consolidate_checkpoint"
    )
    joined = subprocess.run(
        [sys.executable, "-m", "lightning.pytorch.utilities.consolidate_checkpoint", str(checkpoints / "last.ckpt")]
        + ["--output_file", str(checkpoints / "joined.ckpt")],
        capture_output=True,
        text=True,
    )
    assert joined.returncode == 0, joined.stderr[-2000:]
    whole = main_here("predict", "--ckpt_path", str(checkpoints / "whole.ckpt"), *args, cwd=folder)
    again = main_here("predict", "--ckpt_path", str(checkpoints / "joined.ckpt"), *args, cwd=folder)
    assert whole.returncode == again.returncode == 0 and whole.stdout == again.stdout and "All:" in whole.stdout


class FakeFSDPTrainer:
    """What save_whole uses of a Trainer under FSDP, writing a folder of shards as it does."""

    def __init__(self):
        from lightning.pytorch.strategies import FSDPStrategy

        self.strategy, self.is_global_zero, self.fail = FSDPStrategy(), True, False

    def save_checkpoint(self, path, weights_only=False):
        path.mkdir(exist_ok=True)
        (path / "__0_0.distcp").write_text(f"shard {self.step}")
        if self.fail:
            raise OSError("No space left on device")
        (path / "meta.pt").write_text(f"meta {self.step}")


def test_a_sharded_last_checkpoint_is_replaced_only_once_written_whole(tmp_path):
    from gpt.train.checkpointing import save_whole

    trainer, last = FakeFSDPTrainer(), tmp_path / "last.ckpt"
    for trainer.step in (1, 2):
        save_whole(trainer, last)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
        assert (last / "meta.pt").read_text() == f"meta {trainer.step}"
    trainer.step, trainer.fail = 3, True
    with pytest.raises(OSError, match="No space"):
        save_whole(trainer, last)
    assert (last / "meta.pt").read_text() == "meta 2" and (last / "__0_0.distcp").read_text() == "shard 2"
    trainer.step, trainer.fail = 4, False
    save_whole(trainer, last)  # the next save clears what the failed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"] and (last / "meta.pt").read_text() == "meta 4"
    run = tmp_path / "lightning_logs/version_0/checkpoints"  # a crash between the swap's two renames:
    run.mkdir(parents=True)
    last.rename(run / "last.ckpt.old")
    assert newest_last(tmp_path / "lightning_logs") == run / "last.ckpt.old"  # --ckpt_path last still finds it
