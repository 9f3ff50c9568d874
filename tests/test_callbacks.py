"""gpt/train/callbacks.py: the dropout schedule, the JSON-lines prediction writer, and what the
speed monitor records."""

import errno
import json
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from gpt.data.prompts import prompt_items
from gpt.interop.checkpoint import best_checkpoint
from gpt.model.generation import SamplingSettings
from gpt.tokenizers import CharTokenizer
from gpt.train.callbacks import DropoutSchedule, JSONLinesWriter, SpeedMonitor, cpu_name
from gpt.train.checkpointing import RunCheckpoint, SafeCheckpointIO
from gpt.train.datamodule import GPTDataModule, as_list
from gpt.train.lit_module import LitGPT


def test_dropout_schedule_moves_every_dropout_and_is_logged(small_corpus, tmp_path):
    dm = GPTDataModule(corpus=str(small_corpus), data_dir=str(tmp_path / "data"), block_size=32, batch_size=4)
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            attn = module.model.transformer.h[0].attn
            seen.append((module.model.transformer.drop.p, attn.dropout, attn.resid_dropout.p))

    module = LitGPT(
        vocab_size=dm.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.3, val_sample_tokens=0
    )
    trainer = L.Trainer(
        max_steps=6,
        accelerator="cpu",
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[DropoutSchedule(0.5, 0.1, steps=4), Record()],
    )
    trainer.fit(module, datamodule=dm)
    expected = [0.5, 0.4, 0.3, 0.2, 0.1, 0.1]
    assert [p for p, _, _ in seen] == pytest.approx(expected)
    assert all(a == b == c for a, b, c in seen)
    logged = [line.split(",") for line in (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()]
    column = logged[0].index("train/dropout")
    assert [float(row[column]) for row in logged[1:] if row[column]] == pytest.approx(expected)
    with pytest.raises(ValueError, match="DropoutSchedule end must be in"):
        DropoutSchedule(0.1, 1.0)


def predict(prompts: list[str], *callbacks: L.Callback) -> None:
    torch.manual_seed(0)
    module = LitGPT(
        vocab_size=5,
        block_size=8,
        n_layer=1,
        n_head=1,
        n_embd=8,
        sampling=SamplingSettings(max_new_tokens=3, stream=False),
    )
    module.tokenizer = CharTokenizer("abcde")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=list(callbacks))
    trainer.predict(module, DataLoader(prompt_items(prompts, 2), batch_size=2, collate_fn=as_list))


def test_json_lines_writer_replaces_the_old_file_only_when_predict_ends(tmp_path, capsys):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    during = []

    class Peek(L.Callback):
        def on_predict_batch_end(self, *args, **kwargs):
            during.append(path.read_text())

    predict(["ab", "c"], JSONLinesWriter(str(path)), Peek())
    assert during == ["old\n", "old\n"]  # whole and old while predict runs
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["index"], r["sample"], r["prompt"]) for r in records] == [
        (0, 0, "ab"),
        (0, 1, "ab"),
        (1, 0, "c"),
        (1, 1, "c"),
    ]
    assert all(len(r["completion"]) == 3 and r["settings"]["max_new_tokens"] == 3 for r in records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary file left


def test_json_lines_writer_keeps_the_old_file_when_predict_fails(tmp_path, capsys):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(ValueError, match="character 'z'"):
        predict(["ab", "az"], JSONLinesWriter(str(path)))
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_json_lines_writer_refuses_a_folder(tmp_path, capsys):
    with pytest.raises(ValueError, match="the JSON-lines writer's path .* is a folder; give a file name"):
        predict(["ab"], JSONLinesWriter(str(tmp_path)))


def test_a_checkpoint_save_that_fails_midway_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def crash(*args, **kwargs):
        raise OSError("the machine went down between writing and renaming")

    monkeypatch.setattr("gpt.files.os.replace", crash)
    with pytest.raises(OSError, match="went down"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1  # the previous checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # and no temporary file left


def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    real_fdopen = os.fdopen

    class FullDisk:  # takes 1,000 bytes, then the disk is full
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr("gpt.files.os.fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as raised:  # not torch's "unexpected pos" RuntimeError that hides it
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC and str(path) in str(raised.value)
    assert "No space left on device while writing" in str(raised.value)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_checkpoints_are_read_through_the_checks(tmp_path):
    path = tmp_path / "planted.ckpt"
    torch.save({"state_dict": {}, "x": Path("x")}, path)  # an object torch would have to import to load
    with pytest.raises(ValueError, match="holds more than tensors and plain values"):
        SafeCheckpointIO().load_checkpoint(path, weights_only=False)  # the argument changes nothing


def test_mfu_peak_is_the_datasheets_for_the_precision_in_use(monkeypatch):
    from types import SimpleNamespace

    from gpt.train.callbacks import peak_flops

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    gpu = SimpleNamespace(root_device=torch.device("cuda", 0))  # no GPU needed: only its name is read
    assert peak_flops(SimpleNamespace(strategy=gpu, precision="bf16-mixed")) == 989e12
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert peak_flops(SimpleNamespace(strategy=gpu, precision="32-true")) == 495e12  # TF32
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert peak_flops(SimpleNamespace(strategy=gpu, precision="32-true")) == 67e12


def test_a_resumed_run_adds_its_time_and_machine_to_what_its_checkpoint_recorded(monkeypatch):
    import time
    from types import SimpleNamespace

    monitor = SpeedMonitor()
    monitor.load_state_dict({"tokens": 100})  # a checkpoint from before time and hardware were recorded
    assert monitor.state_dict() == {"tokens": 100, "seconds": 0.0, "hardware": []}
    saved = {"tokens": 100, "seconds": 50.0, "hardware": ["2 x NVIDIA H100 80GB HBM3, bf16-mixed"]}
    monitor.load_state_dict(saved)
    cpu = SimpleNamespace(root_device=torch.device("cpu"))
    trainer = SimpleNamespace(strategy=cpu, precision="32-true", world_size=1, global_step=5)
    monitor.on_train_start(trainer, SimpleNamespace())
    started = monitor._started
    monkeypatch.setattr(time, "perf_counter", lambda: started + 10.0)  # ten seconds of training since the resume
    state = monitor.state_dict()
    assert state["seconds"] == 60.0
    here = f"1 x CPU ({cpu_name()}, {torch.get_num_threads()} threads), 32-true"
    assert state["hardware"] == ["2 x NVIDIA H100 80GB HBM3, bf16-mixed", here]
    assert saved["hardware"] == ["2 x NVIDIA H100 80GB HBM3, bf16-mixed"]  # the checkpoint's list is not changed


def test_the_runs_checkpoint_state_from_before_it_had_a_class_of_its_own_is_read_as_its(tmp_path):
    """Checkpoints written when the run's best checkpoint was a plain ModelCheckpoint resume
    with its best path; a user's ModelCheckpoint of the same settings keeps a key of its own."""
    run = RunCheckpoint(monitor="val/loss", filename="step{step}")
    assert run.state_key != ModelCheckpoint(monitor="val/loss").state_key
    assert run.legacy_state_key == ModelCheckpoint(monitor="val/loss").state_key
    (tmp_path / "step6.ckpt").write_bytes(b"")
    old = {"callbacks": {run.legacy_state_key: {"best_model_path": "/elsewhere/step6.ckpt"}}, "state_dict": {}}
    torch.save(old, tmp_path / "last.ckpt")
    assert best_checkpoint(tmp_path / "last.ckpt") == tmp_path / "step6.ckpt"
    loaded = SafeCheckpointIO(run).load_checkpoint(tmp_path / "last.ckpt")
    assert loaded["callbacks"] == {run.state_key: {"best_model_path": "/elsewhere/step6.ckpt"}}
