"""gpt/train/lit_module.py: LitGPT's settings, steps, metrics, schedule under the Trainer and
checkpoint hooks."""

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from gpt.model.config import GPTConfig
from gpt.model.generation import SamplingSettings
from gpt.model.models import GPT, BigramLM, MultiHeadLM
from gpt.model.optim import cosine_lr
from gpt.tokenizers import CharTokenizer
from gpt.train.datamodule import GPTDataModule
from gpt.train.lit_module import LitGPT
from helpers import FIXTURES, SPEECHES_TEXT, main_here

TINY = dict(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8)


def quiet_trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**(defaults | kwargs))


def test_the_model_settings_are_gptconfig_fields_over_a_preset():
    module = LitGPT(preset="baby", vocab_size=65, n_layer=1)
    assert module.config == GPTConfig(preset="baby", vocab_size=65, n_layer=1)
    assert module.config.block_size == 256 and module.config.bias is False
    assert isinstance(module.model, GPT) and len(module.model.transformer.h) == 1
    # Saved as given: the preset and the fields set beside it, which rebuild the same model.
    assert (module.hparams.preset, module.hparams.n_layer, module.hparams.vocab_size) == ("baby", 1, 65)
    assert LitGPT(**module.hparams).config == module.config
    with pytest.raises(TypeError, match="n_layers"):
        LitGPT(n_layers=2)  # not a GPTConfig field


def test_the_objective_sets_the_attention():
    assert LitGPT(**TINY).config.causal is True
    assert LitGPT(**TINY, objective="masked").config.causal is False


def test_arch_picks_the_teaching_model():
    module = LitGPT(arch="multi_head", vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8)
    assert isinstance(module.model, MultiHeadLM) and len(module.model.attn.heads) == 2
    assert isinstance(LitGPT(arch="bigram", vocab_size=5, block_size=8).model, BigramLM)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(preset="gpt3"), ValueError, "unknown preset 'gpt3'; known presets: gpt2, gpt2-medium, gpt2-large"),
        (dict(learning_rate=1e-4, min_lr=1e-3), ValueError, "need 0 <= min_lr <= learning_rate"),
        (dict(objective="masked", mask_prob=1.2), ValueError, r"mask_prob must be in \(0, 1\), got 1.2"),
        (dict(objective="masked", arch="blocks"), ValueError, "objective masked needs arch gpt"),
        (
            dict(arch="bigram", vocab_size=5, init_from="x"),
            ValueError,
            "init_from loads a GPT's weights; arch 'bigram' is a teaching model: use arch gpt",
        ),
    ],
)
def test_bad_settings_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        LitGPT(**kwargs)


def test_sampling_settings_are_not_saved_as_hyperparameters():
    module = LitGPT(**TINY, sampling=SamplingSettings(temperature=0.5, top_k=3))
    assert module.sampling.temperature == 0.5 and "sampling" not in module.hparams
    assert "temperature" not in module.hparams and module.hparams.n_embd == 8


def test_scheduler_under_trainer_steps_every_optimizer_step(tmp_path):
    torch.manual_seed(0)
    module = LitGPT(
        vocab_size=10,
        block_size=8,
        n_layer=1,
        n_head=1,
        n_embd=8,
        dropout=0.0,
        learning_rate=1e-2,
        min_lr=1e-3,
        warmup_steps=3,
        val_sample_tokens=0,
    )
    data = torch.utils.data.DataLoader(
        [(torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,))) for _ in range(64)], batch_size=4
    )
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    quiet_trainer(max_steps=10, callbacks=[Record()], default_root_dir=tmp_path).fit(module, train_dataloaders=data)
    assert lrs == [[pytest.approx(cosine_lr(s, 1e-2, 1e-3, 3, 10))] * 2 for s in range(10)]


def test_tokenizer_travels_in_checkpoint():
    module = LitGPT(**TINY)
    module.tokenizer = CharTokenizer("abcde")
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    fresh = LitGPT(**TINY)
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.tokenizer.chars == "abcde" and fresh.restored_from_checkpoint


def test_checkpoint_tokenizer_must_fit_vocab_size():
    module = LitGPT(**(TINY | dict(vocab_size=6)))
    with pytest.raises(ValueError, match="tokenizer has 5 tokens but its model has vocab_size 6"):
        module.on_load_checkpoint({"tokenizer": CharTokenizer("abcde").state_dict()})
    with pytest.raises(ValueError, match="tokenizer has 5 tokens but its model has vocab_size 7"):
        module.on_load_checkpoint(
            {"tokenizer": CharTokenizer("abcde").state_dict(), "hyper_parameters": {"vocab_size": 7}}
        )


def test_a_checkpoint_written_before_the_restructure_loads(tmp_path):
    module = LitGPT.load_from_checkpoint(FIXTURES / "legacy" / "bpe_masked.ckpt", weights_only=True)
    assert module.masked and module.config.pos == "rope" and module.config.causal is False
    assert module.tokenizer.kind == "bpe" and module.tokenizer.vocab_size == module.config.vocab_size == 300


@pytest.mark.parametrize("mode", ["paragraphs", "windows"])
def test_masked_training_logs_accuracy_and_val_masks_are_seeded(tmp_path, mode):
    (tmp_path / "speeches.txt").write_text(SPEECHES_TEXT)
    dm = GPTDataModule(
        corpus=str(tmp_path / "speeches.txt"),
        data_dir=str(tmp_path / "data"),
        block_size=32,
        batch_size=4,
        mode=mode,
        objective="masked",
    )
    losses = []
    for _ in range(2):
        L.seed_everything(0)
        module = LitGPT(
            objective="masked",
            vocab_size=dm.vocab_size,
            block_size=32,
            n_layer=1,
            n_head=2,
            n_embd=32,
            dropout=0.0,
            val_sample_tokens=0,
        )
        trainer = quiet_trainer(max_steps=4, logger=CSVLogger(tmp_path), log_every_n_steps=1)
        trainer.fit(module, datamodule=dm)
        metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
        again = trainer.validate(module, datamodule=dm, verbose=False)[0]
        assert metrics == again  # the same tokens hidden at every validation
        assert 0 < metrics["val/acc"] < 1 and metrics["val/loss"] > 0
        losses.append(metrics["val/loss"])
    assert losses[0] == losses[1]
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "train/acc" in logged and "val/acc" in logged


def test_tf32_is_set_on_cuda_only():
    from gpt.train.runtime import set_matmul_precision

    before = torch.get_float32_matmul_precision()
    try:
        set_matmul_precision(torch.device("cpu"), True)
        assert torch.get_float32_matmul_precision() == before == "highest"  # a CPU computes as it did
        set_matmul_precision(torch.device("cuda", 0), True)
        assert torch.get_float32_matmul_precision() == "high"
        set_matmul_precision(torch.device("cuda", 0), False)
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.slow
def test_a_compiled_fit_gives_the_same_logits_and_a_checkpoint_uncompiled_models_load(tmp_path, monkeypatch):
    """What model.compile changes in our code: the forward fit runs, the checkpoint's names,
    predict from it. Compiled with dynamo and AOTAutograd but without inductor's code generation
    (backend aot_eager: half a minute of C++ compiling saved); inductor itself compiles a fit in
    scripts/gpu_check.py's dry run, which test_gpu_check.py runs."""
    import functools

    from gpt.interop.checkpoint import load_model
    from helpers import samples

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch.manual_seed(0)
    module = LitGPT(**(TINY | dict(n_layer=2, n_head=2)), compile=True, dropout=0.0, val_sample_tokens=0)
    module.tokenizer = CharTokenizer("abcde")
    data = torch.utils.data.DataLoader([(torch.randint(0, 5, (8,)), torch.randint(0, 5, (8,)))] * 8, batch_size=4)
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=data)
    assert module.compiled_forward is not None and trainer.global_step == 2
    idx = torch.randint(0, 5, (3, 8))
    with torch.no_grad():
        torch.testing.assert_close(module.run_model(idx, None), module.model.eval()(idx), rtol=0, atol=1e-5)
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    state = torch.load(tmp_path / "compiled.ckpt", weights_only=True)["state_dict"]
    assert not [k for k in state if "_orig_mod" in k]  # the names an uncompiled model has
    plain, _ = load_model(tmp_path / "compiled.ckpt")
    with torch.no_grad():
        torch.testing.assert_close(plain(idx), module.model(idx), rtol=0, atol=0)
    out = main_here("predict", "--ckpt_path", str(tmp_path / "compiled.ckpt"), "--data.prompt", "abc", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert samples(out.stdout)[0].startswith("abc")


def test_compile_with_a_dropout_schedule_is_refused(tmp_path):
    from gpt.train.callbacks import DropoutSchedule

    module = LitGPT(**TINY, compile=True, val_sample_tokens=0)
    data = torch.utils.data.DataLoader([(torch.zeros(8, dtype=torch.long),) * 2] * 4, batch_size=2)
    trainer = quiet_trainer(max_steps=1, callbacks=[DropoutSchedule()], default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="model.compile with the DropoutSchedule callback"):
        trainer.fit(module, train_dataloaders=data)
