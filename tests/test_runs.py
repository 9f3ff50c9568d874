"""Run folders: claiming a new version_N, holding a run against a second writer, finding checkpoints."""

import multiprocessing
import signal
import subprocess
import sys

import pytest

from gpt.interop.checkpoint import LAST, newest_last
from gpt.train.runs import RunInUse, claim_new_run, hold_run, new_run, run_of


@pytest.mark.slow
def test_runs_started_at_the_same_moment_get_different_folders(tmp_path):
    (tmp_path / "version_3").mkdir()  # an older run: new ones come after it
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        versions = pool.map(claim_new_run, [tmp_path] * 12)
    assert sorted(versions) == list(range(4, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"version_{n}" for n in range(3, 16))


def test_a_folder_made_since_the_listing_is_skipped_not_shared(tmp_path, monkeypatch):
    (tmp_path / "version_0").mkdir()  # another run made it after this one listed the runs
    monkeypatch.setattr("gpt.train.runs.run_folders", lambda experiment: [])
    assert claim_new_run(tmp_path) == 1


def test_a_held_run_refuses_a_second_writer_until_released(tmp_path):
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    with hold_run(run):
        with pytest.raises(RunInUse, match="version_0 is being written by another fit that is still running"):
            with hold_run(run):
                pass
    with hold_run(run):  # released: free again
        pass
    assert (run / "checkpoints").is_dir()  # a run with files is kept


@pytest.mark.slow
def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "events").write_text("x")
    hold = f"import pathlib, time\nfrom gpt.train.runs import hold_run\nwith hold_run(pathlib.Path({str(run)!r})):\n"
    hold += "    print('held', flush=True)\n    time.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(RunInUse):
        with hold_run(run):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with hold_run(run):  # the kernel dropped the dead process's lock
        pass


def test_a_run_that_wrote_nothing_leaves_no_folder(tmp_path):
    experiment = tmp_path / "lightning_logs" / "small"
    with pytest.raises(ValueError):
        with new_run(experiment) as version:
            assert version == 0 and (experiment / "version_0").is_dir()
            raise ValueError("the corpus is missing")
    assert list(tmp_path.iterdir()) == []  # nor the folders made for it
    with new_run(experiment) as version:
        (experiment / f"version_{version}" / "events").write_text("x")
    assert sorted(p.name for p in (experiment / "version_0").iterdir()) == [".lock", "events"]


def test_last_and_the_run_a_checkpoint_belongs_to(tmp_path):
    for n, has_last in ((0, True), (1, True), (2, False)):
        (tmp_path / f"version_{n}" / "checkpoints").mkdir(parents=True)
        if has_last:
            (tmp_path / f"version_{n}" / "checkpoints" / LAST).write_bytes(b"")
    (tmp_path / "version_10").mkdir()  # numbers, not names, order runs
    assert newest_last(tmp_path) == tmp_path / "version_1" / "checkpoints" / LAST
    assert run_of(tmp_path / "version_1" / "checkpoints" / LAST, tmp_path) == 1
    assert run_of(tmp_path / "elsewhere.ckpt", tmp_path) is None


def test_a_run_that_fails_before_its_first_step_leaves_no_folder_whatever_setup_wrote(tmp_path):
    experiment = tmp_path / "lightning_logs" / "small"
    for trained in (False, True):
        with pytest.raises(ValueError):
            with new_run(experiment, trained=lambda: trained) as version:
                (experiment / f"version_{version}" / "config.yaml").write_text("x")  # setup writes these
                (experiment / f"version_{version}" / "checkpoints").mkdir()
                raise ValueError("the corpus is missing")
    # The first left nothing (version_0 taken again); the second had trained: its files stay.
    assert sorted(p.name for p in experiment.iterdir()) == ["version_0"]
    assert sorted(p.name for p in (experiment / "version_0").iterdir()) == [".lock", "checkpoints", "config.yaml"]
