"""Masked language modelling and variable-length batches: data, training, predict, errors."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from helpers import SPEECHES_TEXT, run_main
from gpt.callbacks import DropoutSchedule
from gpt.datamodule import GPTDataModule, PadBatch
from gpt.lit_module import LitGPT
from gpt.masking import IGNORE_INDEX
from gpt.tokenizers import MASK, PAD, TokenizerConfig

SPEECHES = SPEECHES_TEXT


@pytest.fixture
def speeches(tmp_path: Path) -> Path:
    path = tmp_path / "speeches.txt"
    path.write_text(SPEECHES, encoding="utf-8")
    return path


def data(corpus: Path, **kwargs) -> GPTDataModule:
    args = dict(corpus=str(corpus), data_dir=str(corpus.parent / "data"), block_size=32, batch_size=4)
    return GPTDataModule(**(args | kwargs))


def test_paragraphs_are_examples_cut_and_padded(speeches):
    dm = data(speeches, mode="paragraphs")
    assert dm.vocab_size == len(set(SPEECHES)) + 2  # the characters, then <|pad|> and <|mask|>
    dm.setup("fit")
    assert len(dm.train_ids) + len(dm.val_ids) == 60 and len(dm.val_ids) == 6
    first = dm.tokenizer.decode(dm.train_ids[0].tolist())
    assert first == ("CITIZEN 0:\nSpeak, speak. \nWe are resolved.\n")[:33]  # block_size + 1 for x and y
    x, y, real = next(iter(dm.val_dataloader()))
    pad = dm.tokenizer.special_tokens[PAD]
    assert x.shape == y.shape == real.shape and x.size(1) == 32
    assert (x[~real] == pad).all() and (y[~real] == IGNORE_INDEX).all()  # padding is never a target
    n = real[0].sum()
    assert torch.equal(y[0, : n - 1], x[0, 1:n])  # y is x shifted by one


def test_lines_mode_and_masked_examples_keep_block_size_tokens(speeches):
    dm = data(speeches, mode="lines", objective="masked")
    dm.setup("fit")
    assert all(len(e) <= 32 for e in dm.train_ids)
    assert dm.tokenizer.decode(dm.train_ids[1].tolist()) == "Speak, speak. \n"
    x, y, real = PadBatch(pad_id=0, shift=False)([dm.train_ids[0], dm.train_ids[1]])
    assert torch.equal(x[real], y[real])  # masked: the model picks its own targets


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(objective="masked", tokenizer=TokenizerConfig(kind="tiktoken", encoding="gpt2")),
         "objective masked needs a <|mask|> token"),
        (dict(mode="paragraphs", tokenizer=TokenizerConfig(kind="tiktoken", encoding="gpt2")),
         "data.mode paragraphs needs a <|pad|> token"),
    ],
)  # fmt: skip
def test_tokenizers_without_the_special_tokens_are_refused(speeches, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        data(speeches, **kwargs).vocab_size


def test_bpe_has_pad_and_mask(speeches):
    dm = data(speeches, mode="paragraphs", objective="masked", tokenizer=TokenizerConfig(kind="bpe", vocab_size=300))
    assert dm.vocab_size == 300 and {PAD, MASK} <= set(dm.tokenizer.special_tokens)


@pytest.mark.parametrize("mode", ["paragraphs", "windows"])
def test_masked_training_logs_accuracy_and_val_masks_are_seeded(speeches, tmp_path, mode):
    dm = data(speeches, mode=mode, objective="masked")
    losses = []
    for _ in range(2):
        L.seed_everything(0)
        module = LitGPT(objective="masked", vocab_size=dm.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32,
                        dropout=0.0, val_sample_tokens=0)  # fmt: skip
        trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=CSVLogger(tmp_path), log_every_n_steps=1,
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
        trainer.fit(module, datamodule=dm)
        metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
        again = trainer.validate(module, datamodule=dm, verbose=False)[0]
        assert metrics == again  # the same tokens hidden at every validation
        assert 0 < metrics["val/acc"] < 1 and metrics["val/loss"] > 0
        losses.append(metrics["val/loss"])
    assert losses[0] == losses[1]
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "train/acc" in logged and "val/acc" in logged


def test_dropout_schedule_moves_every_dropout_and_is_logged(speeches, tmp_path):
    dm = data(speeches)
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            attn = module.model.transformer.h[0].attn
            seen.append((module.model.transformer.drop.p, attn.dropout, attn.resid_dropout.p))

    module = LitGPT(vocab_size=dm.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.3,
                    val_sample_tokens=0)  # fmt: skip
    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=CSVLogger(tmp_path), log_every_n_steps=1,
                        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[DropoutSchedule(0.5, 0.1, steps=4), Record()])  # fmt: skip
    trainer.fit(module, datamodule=dm)
    expected = [0.5, 0.4, 0.3, 0.2, 0.1, 0.1]
    assert [p for p, _, _ in seen] == pytest.approx(expected)
    assert all(a == b == c for a, b, c in seen)
    logged = [line.split(",") for line in (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()]
    column = logged[0].index("train/dropout")
    assert [float(row[column]) for row in logged[1:] if row[column]] == pytest.approx(expected)
    with pytest.raises(ValueError, match="DropoutSchedule end must be in"):
        DropoutSchedule(0.1, 1.0)


def test_bad_masked_settings():
    with pytest.raises(ValueError, match=r"mask_prob must be in \(0, 1\), got 1.2"):
        LitGPT(objective="masked", mask_prob=1.2)
    with pytest.raises(ValueError, match="objective masked needs arch gpt"):
        LitGPT(objective="masked", arch="blocks")


def test_cli_masked_fit_then_fill_mask(speeches, tmp_path):
    fit = run_main("fit", "--data.corpus", str(speeches), "--data.mode", "paragraphs", "--model.objective", "masked",
                   "--model.n_layer", "1", "--model.n_head", "2", "--model.n_embd", "32", "--model.block_size", "32",
                   "--data.batch_size", "4", "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false",
                   cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    (checkpoint,) = (tmp_path / "lightning_logs").rglob("*.ckpt")
    writer = ["--trainer.callbacks+=gpt.callbacks.JSONLinesWriter", "--trainer.callbacks.path", "fill.jsonl"]
    out = run_main("predict", "--ckpt_path", str(checkpoint), "--data.prompt", "Spe<|mask|>k, <|mask|>peak.",
                   "--model.top_k", "3", *writer, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "fill.jsonl").read_text().splitlines()]
    assert len(record["candidates"]) == 2 and all(len(c) == 3 for c in record["candidates"])
    assert all(sum(p for _, p in c) <= 1.0001 for c in record["candidates"])
    filled = record["completion"]
    assert len(filled) == len("Speak, speak.") and filled[:3] == "Spe" and MASK not in filled
    assert f"{MASK} 1: " in out.stdout and f"{MASK} 2: " in out.stdout
    no_mask = run_main("predict", "--ckpt_path", str(checkpoint), "--data.prompt", "Speak", cwd=tmp_path)
    assert no_mask.returncode == 1 and "the prompt has no <|mask|> to fill" in no_mask.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data.tokenizer.kind", "tiktoken", "--data.tokenizer.encoding", "gpt2"],
         "error: objective masked needs a <|mask|> token, which the tokenizer (TiktokenTokenizer('gpt2'"),
        (["--model.mask_prob", "0"], "error: mask_prob must be in (0, 1), got 0.0"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_masked_settings_at_the_start(speeches, tmp_path, extra, message):
    result = run_main("fit", "--data.corpus", str(speeches), "--model.objective", "masked", *extra, cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "lightning_logs").exists()  # before any work
