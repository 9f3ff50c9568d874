"""gpt/interop/checkpoint.py: the one place a checkpoint is opened, checked and read."""

import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.interop.checkpoint import (
    check_checkpoint,
    checkpoint_tokenizer,
    load_checkpoint,
    load_model,
    model_config,
    model_weights,
    read_tokenizer,
    resolve_checkpoint,
)
from gpt.model.models import GPT, BlocksLM
from helpers import FIXTURES, LINES_TEXT

LEGACY = FIXTURES / "legacy"


def test_load_model_gives_a_plain_model_in_eval_mode_with_its_tokenizer():
    model, tokenizer = load_model(LEGACY / "char_gpt2.ckpt")
    assert isinstance(model, GPT) and not model.training
    assert tokenizer.decode(tokenizer.encode(LINES_TEXT)) == LINES_TEXT
    checkpoint = load_checkpoint(LEGACY / "char_gpt2.ckpt")
    weights = model_weights(checkpoint)
    assert set(weights) == set(model.state_dict()) and all(
        torch.equal(weights[k], v) for k, v in model.state_dict().items()
    )


def test_model_config_from_the_hyperparameters():
    blocks = model_config(load_checkpoint(LEGACY / "char_blocks.ckpt"))
    assert (blocks.arch, blocks.n_layer, blocks.n_embd, blocks.block_size, blocks.causal) == ("blocks", 1, 16, 16, True)
    assert isinstance(load_model(LEGACY / "char_blocks.ckpt")[0], BlocksLM)
    masked = model_config(load_checkpoint(LEGACY / "bpe_masked.ckpt"))
    assert (masked.pos, masked.mlp, masked.norm, masked.bias) == ("rope", "swiglu", "rmsnorm", False)
    assert masked.causal is False  # a masked model attends both ways: its objective says so


def test_a_path_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint 'nope.ckpt' does not exist"):
        check_checkpoint("nope.ckpt")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.ckpt")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes((LEGACY / "char_gpt2.ckpt").read_bytes()[:2000])
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
        load_checkpoint(cut)


def test_code_in_a_checkpoint_is_never_run(tmp_path, capsys):
    class Planted:
        def __reduce__(self):
            return (print, ("planted code ran",))

    torch.save({"state_dict": {}, "hyper_parameters": {}, "planted": Planted()}, tmp_path / "planted.ckpt")
    with pytest.raises(ValueError, match="holds more than tensors and plain values") as refused:
        load_checkpoint(tmp_path / "planted.ckpt")
    assert "GLOBAL print" in str(refused.value) and "weights_only" not in str(refused.value)  # no advice to trust it
    assert "planted code ran" not in capsys.readouterr().out


def test_the_tokenizer_must_fit_the_model(tmp_path):
    checkpoint = load_checkpoint(LEGACY / "char_gpt2.ckpt")
    checkpoint["tokenizer"] = {"kind": "char", "chars": "abc", "special_tokens": []}
    with pytest.raises(ValueError, match="the checkpoint's tokenizer has 3 tokens but its model has vocab_size 43"):
        checkpoint_tokenizer(checkpoint)
    del checkpoint["tokenizer"]
    assert checkpoint_tokenizer(checkpoint) is None
    torch.save(checkpoint, tmp_path / "no_tokenizer.ckpt")
    with pytest.raises(ValueError, match="has no tokenizer"):
        read_tokenizer(tmp_path / "no_tokenizer.ckpt")


def test_a_checkpoint_without_hyperparameters(tmp_path):
    shutil.copy(LEGACY / "char_gpt2.ckpt", tmp_path / "c.ckpt")
    checkpoint = load_checkpoint(tmp_path / "c.ckpt")
    del checkpoint["hyper_parameters"]
    with pytest.raises(ValueError, match="the checkpoint has no hyperparameters"):
        model_config(checkpoint)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=4))
def test_changed_bytes_are_refused_or_change_nothing(tmp_path_factory, changes):
    """Any bytes of a checkpoint changed: it is refused with a ValueError, or (a change in
    the zip's padding, which no checksum covers) it reads back the very same weights."""
    original = (LEGACY / "char_gpt2.ckpt").read_bytes()
    data = bytearray(original)
    for position, flip in changes:
        data[position % len(data)] ^= flip
    path = tmp_path_factory.mktemp("changed") / "c.ckpt"
    path.write_bytes(bytes(data))
    try:
        checkpoint = load_checkpoint(path)
    except ValueError:
        return
    expected = load_checkpoint(LEGACY / "char_gpt2.ckpt")
    assert checkpoint.keys() == expected.keys()
    assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in expected["state_dict"].items())


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_are_refused_with_one_clear_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "c.ckpt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="c.ckpt"):
        load_checkpoint(path)


def test_a_run_folder_means_its_newest_last_checkpoint(tmp_path):
    experiment = tmp_path / "lightning_logs" / "small"
    for n in (0, 1, 2):  # version_2 stopped before saving
        (experiment / f"version_{n}" / "checkpoints").mkdir(parents=True)
    for n in (0, 1):
        shutil.copy(LEGACY / "char_gpt2.ckpt", experiment / f"version_{n}" / "checkpoints" / "last.ckpt")
    newest = experiment / "version_1" / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(experiment) == newest
    assert resolve_checkpoint(experiment / "version_0") == experiment / "version_0" / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(newest) == newest and resolve_checkpoint("nope.ckpt") == Path("nope.ckpt")
    assert load_checkpoint(experiment)["global_step"] == load_checkpoint(newest)["global_step"]
    mine = tmp_path / "mine"  # a folder of a user's own checkpoints: the hint names one that is there
    mine.mkdir()
    shutil.copy(LEGACY / "char_gpt2.ckpt", mine / "a.ckpt")
    with pytest.raises(
        FileNotFoundError, match=f"no checkpoint in {mine}: .*give one of its checkpoints, e.g. {mine}/a.ckpt"
    ):
        resolve_checkpoint(mine)
    with pytest.raises(FileNotFoundError, match="lightning_logs/ holds no runs itself but folders of runs: small"):
        resolve_checkpoint(tmp_path / "lightning_logs")
