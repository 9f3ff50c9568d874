"""gpt/train/tensorboard.py and the speed monitor, read back from the event files of a real fit (the
`trained` fixture: 2 layers, 2 heads, 32 wide, context 32, 12 steps of 8 x 32 tokens,
validation every 6 steps, logs every 2)."""

import math
import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from gpt.eval.visualize import token_label
from gpt.interop.checkpoint import load_model
from gpt.train.callbacks import cpu_name
from gpt.train.tensorboard import LAYOUT, RunLogger
from helpers import ROOT, fit_args, main_here, scalars

MASKED_ONLY = {"val/acc", "train/acc"}


def events(run_dir):
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def documented_tags() -> set[str]:
    """The tags docs/training.md's "Watch it train" table names (in backticks, with a slash)."""
    section = (ROOT / "docs" / "training.md").read_text().split("## Watch it train")[1].split("\n## ")[0]
    return {tag for tag in re.findall(r"`([a-z_]+/[a-z_0-9]+)`", section)}


def test_every_tag_the_docs_name_is_written(trained):
    run_dir, _, _, _ = trained
    written = events(run_dir).Tags()
    found = set(written["scalars"]) | set(written["images"])
    found |= {t.removesuffix("/text_summary") for t in written["tensors"]}
    named = documented_tags()
    assert {"train/loss", "val/loss", "train/grad_norm", "attention/layer_1", "val/sample"} <= named
    assert named - MASKED_ONLY <= found, sorted(named - MASKED_ONLY - found)
    assert "epoch" not in found  # Lightning's epoch counter is dropped: it drew a flat line at 0


def test_speed_and_tokens_seen(trained):
    run_dir, checkpoint, _, _ = trained
    tokens = scalars(run_dir, "train/tokens")
    assert tokens == [(step, (step + 1) * 8 * 32) for step in (1, 3, 5, 7, 9, 11)]  # 8 windows of 32 a step
    record = torch.load(checkpoint, weights_only=True)["callbacks"]["SpeedMonitor"]
    assert record["tokens"] == 12 * 8 * 32 and record["seconds"] > 0  # fit's wall time: a report card shows it
    assert record["hardware"] == [f"1 x CPU ({cpu_name()}, {torch.get_num_threads()} threads), 32-true"]
    for tag in ("train/tokens_per_sec", "train/ms_per_step"):
        assert [step for step, _ in scalars(run_dir, tag)] == [1, 3, 5, 7, 9, 11]
        assert all(value > 0 for _, value in scalars(run_dir, tag))
    # tokens/s and ms/step describe the same windows: 2 steps x 256 tokens each
    for (_, rate), (_, ms) in zip(scalars(run_dir, "train/tokens_per_sec"), scalars(run_dir, "train/ms_per_step")):
        assert rate == pytest.approx(256 / (ms / 1000), rel=1e-3)
    assert all(0 < mfu < 1 for _, mfu in scalars(run_dir, "train/mfu"))


def test_gradient_norm_and_best_validation_loss(trained):
    run_dir, _, _, _ = trained
    norms = scalars(run_dir, "train/grad_norm")
    assert len(norms) == 6 and all(math.isfinite(n) and n > 0 for _, n in norms)
    val = scalars(run_dir, "val/loss")
    best = scalars(run_dir, "val/best_loss")
    assert [s for s, _ in best] == [s for s, _ in val]
    assert [b for _, b in best] == pytest.approx([min(v for _, v in val[: i + 1]) for i in range(len(val))])


def test_training_and_validation_loss_share_one_chart(trained):
    run_dir, _, _, _ = trained
    (event,) = events(run_dir).Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["training and validation loss"] == ["train/loss", "val/loss"]
    assert set(charts) == {title for category in LAYOUT.values() for title in category}


def test_hparams_list_every_setting_and_the_validation_metrics(trained):
    run_dir, _, _, _ = trained
    content = events(run_dir).PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in content.items()}
    experiment = data["_hparams_/experiment"].experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/loss", "val/best_loss"]
    hparams = data["_hparams_/session_start_info"].session_start_info.hparams
    assert hparams["model.n_layer"].number_value == 2 and hparams["model.n_embd"].number_value == 32
    assert hparams["model.learning_rate"].number_value == 1e-3
    assert hparams["model.mlp"].string_value == "gelu"  # as built, not the "None" that means "the preset's"
    assert hparams["data.batch_size"].number_value == 8 and hparams["data.tokenizer.kind"].string_value == "char"
    assert hparams["trainer.max_steps"].number_value == 12
    assert hparams["trainer.precision"].string_value == "32-true"
    # the metrics HPARAMS shows for the run are these scalars' last values
    assert scalars(run_dir, "val/loss") and scalars(run_dir, "val/best_loss")


def test_attention_maps_every_layer_at_every_validation(trained):
    run_dir, _, _, _ = trained
    accumulator = events(run_dir)
    for layer in (0, 1):
        images = accumulator.Images(f"attention/layer_{layer}")
        assert [image.step for image in images] == [5, 11]  # with val/loss: the logger counts from 0
        # 2 heads of 32 x 32 (the context is 32 tokens) scaled 5x to 160 pixels, a 2-pixel gap between
        assert {(image.width, image.height) for image in images} == {(2 * 160 + 2, 160)}
    (text, *_) = accumulator.Tensors("attention/prompt/text_summary")
    tokens = text.tensor_proto.string_val[0].decode().split("Tokens: ")[1].split(" ")
    assert [t.split(":")[0] for t in tokens] == [str(i) for i in range(32)]


def test_token_embeddings_for_the_projector(trained):
    run_dir, checkpoint, _, _ = trained
    config = (run_dir / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "projector/tensors.tsv"' in config and 'metadata_path: "projector/metadata.tsv"' in config
    assert 'tensor_name: "token embeddings (wte) after 12 steps"' in config
    model, tokenizer = load_model(checkpoint)
    table = np.loadtxt(run_dir / "projector" / "tensors.tsv", delimiter="\t", ndmin=2)
    assert table.shape == (tokenizer.vocab_size, 32)
    np.testing.assert_allclose(table, model.transformer.wte.weight.detach().numpy(), rtol=1e-4, atol=1e-6)
    labels = (run_dir / "projector" / "metadata.tsv").read_text(encoding="utf-8").split("\n")[:-1]
    assert labels == [token_label(tokenizer, i) for i in range(tokenizer.vocab_size)]
    assert "\\n" in labels and "␣" in labels  # whitespace spelled out, one label a line


@pytest.mark.parametrize("arch, heads", [("head", 1), ("blocks", 2)])
def test_teaching_models_show_their_attention_and_embeddings(small_corpus, tmp_path, arch, heads):
    args = fit_args(small_corpus, tmp_path / "data", steps=2)
    result = main_here(*args, "--model.arch", arch, *(["--model.n_head", "1"] if heads == 1 else []), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "lightning_logs" / "version_0"
    layers = 1 if arch == "head" else 2
    images = events(run_dir).Tags()["images"]
    assert sorted(images) == [f"attention/layer_{i}" for i in range(layers)]
    (image,) = events(run_dir).Images("attention/layer_0")
    assert (image.width, image.height) == (heads * 160 + (heads - 1) * 2, 160)
    rows = (run_dir / "projector" / "tensors.tsv").read_text().splitlines()
    assert len(rows) == len(set(small_corpus.read_text())) and len(rows[0].split("\t")) == 32


def test_a_run_resumed_within_the_second_it_started_writes_a_file_tensorboard_reads_after(tmp_path):
    """Event files are named by the second they were opened, then host and process id, and read
    in name order: the resumed part's must sort after the first part's, or its steps are purged."""
    import socket
    import time

    folder = tmp_path / "version_0"
    folder.mkdir()
    first = folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.99999999.0"
    first.touch()  # the killed run's file, opened this second by a process whose id sorts after ours
    writer = RunLogger(str(tmp_path), name="", version=0).experiment
    writer.add_scalar("train/loss", 1.0, 7)
    writer.flush()
    assert sorted(p.name for p in folder.iterdir())[0] == first.name
    assert len(list(folder.iterdir())) == 2
