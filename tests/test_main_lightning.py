"""main.py fit run the way a Lightning user runs it: checkpoint callbacks of their own, other
loggers and folders, Trainer flags; and what a newcomer mistypes. Whatever they add, the run's
own last.ckpt and best checkpoint stay in its checkpoints/ folder, where --ckpt_path last and
best find them, and a run that fails before training leaves no folder."""

import pytest
import torch
import yaml

from helpers import assert_clean_error, fit_args, main_here, scalars

MODEL_CHECKPOINT = "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint"


def fit(corpus, folder, *extra, steps=4):
    return main_here(*fit_args(corpus, folder / "data", steps=steps), *extra, cwd=folder)


def step_of(checkpoint) -> int:
    return torch.load(checkpoint, weights_only=True)["global_step"]


@pytest.mark.slow
def test_model_checkpoints_of_the_users_leave_the_runs_own_where_they_are(small_corpus, tmp_path):
    every_2_steps = "--trainer.callbacks.dirpath mid --trainer.callbacks.every_n_train_steps 2 "
    every_2_steps += "--trainer.callbacks.save_top_k -1 --trainer.callbacks.filename mid-{step} "
    every_2_steps += "--trainer.callbacks.save_last true"
    # ... and one with the very settings of the run's own: their states must not collide
    best_2 = "--trainer.callbacks.monitor val/loss --trainer.callbacks.save_top_k 2"
    mine = [MODEL_CHECKPOINT, *every_2_steps.split(), MODEL_CHECKPOINT, *best_2.split()]
    result = fit(small_corpus, tmp_path, *mine)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    loss = scalars(run.parent, "val/loss")[-1][1]
    assert sorted(p.name for p in run.iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt", f"step4-val{loss:.3f}.ckpt"]
    assert sorted(p.name for p in (tmp_path / "mid").iterdir()) == ["last.ckpt", "mid-step=2.ckpt", "mid-step=4.ckpt"]
    assert step_of(run / "last.ckpt") == 4
    saved = yaml.safe_load((run.parent / "config.yaml").read_text())["trainer"]["logger"]["init_args"]
    assert saved["version"] is None  # fit --config with this file starts a new run, not over this one
    mid = tmp_path.resolve() / "mid"
    folder = "lightning_logs/version_0/checkpoints"
    assert result.stderr.splitlines()[-6:-2] == [
        f"your ModelCheckpoint: newest: {mid}/mid-step=4.ckpt",
        f"your ModelCheckpoint: last: {mid}/last.ckpt",
        f"your ModelCheckpoint: best (val/loss {loss:.4f}): {folder}/epoch=0-step=4.ckpt",
        f"best checkpoint (val/loss {loss:.4f}): {folder}/step4-val{loss:.3f}.ckpt",
    ]
    assert result.stderr.splitlines()[-2] == f"last checkpoint: {folder}/last.ckpt"
    resumed = fit(small_corpus, tmp_path, *mine, "--ckpt_path", "last", steps=6)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"--ckpt_path last: {folder}/last.ckpt" in resumed.stderr and step_of(run / "last.ckpt") == 6
    best = main_here("predict", "--ckpt_path", "best", "--model.sampling.max_new_tokens", "1", cwd=tmp_path)
    assert best.returncode == 0, best.stderr[-3000:]
    assert f"--ckpt_path best: {folder}/step" in best.stderr  # the run's own best, not the user's


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, first, resumed",
    [
        (["--trainer.default_root_dir", "out"], "out/lightning_logs/version_0", "out/lightning_logs/version_0"),
        # a CSVLogger empties a version folder it logs to again: a resumed run logs to the next one
        (
            ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "csv"],
            "csv/version_0",
            "csv/version_1",
        ),  # noqa: E501
        (
            ["--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger", "--trainer.logger.save_dir", "tb"],
            "tb/version_0",
            "tb/version_0",
        ),  # noqa: E501
        (["--trainer.logger", "false"], ".", "."),  # Lightning's place: checkpoints/ in default_root_dir
        (
            ["--trainer.logger", "true"],
            "lightning_logs/version_0",
            "lightning_logs/version_1",
        ),  # Lightning's own logger
    ],
)
def test_other_loggers_and_folders_resume_with_last(small_corpus, tmp_path, extra, first, resumed):
    result = fit(small_corpus, tmp_path, *extra, steps=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert step_of(tmp_path / first / "checkpoints" / "last.ckpt") == 2
    again = fit(small_corpus, tmp_path, *extra, "--ckpt_path", "last", steps=4)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"--ckpt_path last: {first}/checkpoints/last.ckpt".replace("./", "") in again.stderr
    assert step_of(tmp_path / resumed / "checkpoints" / "last.ckpt") == 4


@pytest.mark.slow
def test_fast_dev_run_writes_nothing_and_a_fraction_of_an_epoch_validates_by_epoch(small_corpus, tmp_path):
    dry = fit(small_corpus, tmp_path, "--trainer.fast_dev_run", "2")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.txt"]  # no run, no checkpoints/
    epochs = "--trainer.max_steps -1 --trainer.max_epochs 1 --trainer.limit_train_batches 4"
    halves = fit(small_corpus, tmp_path, *epochs.split(), "--trainer.val_check_interval", "0.5")
    assert halves.returncode == 0, halves.stderr[-3000:]
    assert [step for step, _ in scalars(tmp_path / "lightning_logs" / "version_0", "val/loss")] == [1, 3]


@pytest.mark.slow
def test_a_signal_with_checkpointing_off_saves_in_the_run_to_resume_from(small_corpus, tmp_path):
    off = ["--trainer.enable_checkpointing", "false"]
    signal = ["--trainer.callbacks+=helpers.SignalAtStep", "--trainer.callbacks.step", "2"]
    stopped = fit(small_corpus, tmp_path, *off, *signal, steps=6)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    last = "lightning_logs/version_0/checkpoints/last.ckpt"
    assert f"SIGTERM at step 3: saved {last}; resume with:" in stopped.stderr
    resumed = fit(small_corpus, tmp_path, *off, "--ckpt_path", "last", steps=6)
    assert resumed.returncode == 0 and f"--ckpt_path last: {last}" in resumed.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--data.corpus", "nowhere/**/*.txt"],
            "the folder 'nowhere' of the corpus glob 'nowhere/**/*.txt' does not exist",
        ),  # noqa: E501
        (["--trainer.max_steps", "-1", "--trainer.max_time", "00:00:01:00"], "but this run has no number of steps"),
    ],
)
def test_a_fit_that_fails_before_its_first_step_leaves_no_run_folder(small_corpus, tmp_path, extra, message):
    result = fit(small_corpus, tmp_path, *extra)
    assert_clean_error(result, message)
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trainer.max_step", "10"], "error: unknown option --trainer.max_step (did you mean --trainer.max_steps?)"),
        (["--model.n_layers", "4"], "error: unknown option --model.n_layers (did you mean --model.n_layer?)"),
        (["--config", "bad.yaml"], "error: bad.yaml: unknown key model.n_layers (did you mean model.n_layer?)"),
        (
            [
                "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
                "--trainer.callbacks.monitr",
                "val/loss",
            ],
            "error: EarlyStopping has no option 'monitr' (did you mean monitor?)",
        ),
    ],
)
def test_a_mistyped_option_is_refused_with_the_closest_one(tmp_path, extra, message):
    (tmp_path / "bad.yaml").write_text("model:\n  n_layers: 4\n")
    result = main_here("fit", *extra, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-3000:]
    assert len(result.stderr.strip().splitlines()) == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_a_starting_run_that_is_not_there_says_how_to_make_it(tmp_path):
    (tmp_path / "configs" / "lab").mkdir(parents=True)
    (tmp_path / "configs" / "lab" / "pre.yaml").write_text("trainer:\n  max_steps: 2\n")
    make = "make it first with: python main.py fit --config configs/lab/pre.yaml"
    result = main_here("fit", "--model.init_from", "lightning_logs/lab_pre", cwd=tmp_path)
    assert_clean_error(result, f"error: --model.init_from lightning_logs/lab_pre: there is no such run folder; {make}")
    (tmp_path / "lightning_logs" / "lab_pre" / "version_0").mkdir(parents=True)  # a run stopped before saving
    result = main_here("fit", "--model.init_from", "lightning_logs/lab_pre", cwd=tmp_path)
    none_saved = "none of the 1 runs in lightning_logs/lab_pre/ has checkpoints/last.ckpt"
    assert_clean_error(
        result, f"no checkpoint in lightning_logs/lab_pre: {none_saved} (they stopped before saving one); {make}"
    )  # noqa: E501
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["lab_pre"]


def test_a_class_that_cannot_be_made_says_why_in_one_line():
    """jsonargparse lists every type's complaint about a logger or callback; its own is kept."""
    from gpt.errors import one_line

    message = (
        "Does not validate against any of the Union subtypes\nSubtypes: [Logger, bool]\nErrors:\n  - Problem with "
        "given class_path 'lightning.pytorch.loggers.WandbLogger':\n    Requirement 'wandb>=0.12.10' not met. HINT: "
        "Try running `pip install -U 'wandb>=0.12.10'`\n  - Expected a <class 'bool'>\nGiven value: Namespace(...)"
    )
    assert one_line(ValueError(message)) == (
        "lightning.pytorch.loggers.WandbLogger: Requirement 'wandb>=0.12.10' not met. HINT: Try running "
        "`pip install -U 'wandb>=0.12.10'`"
    )
