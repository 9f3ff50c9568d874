"""Hugging Face GPT-2 parity: weights in and out, logits equal to 1e-5. transformers is a
dev extra; its models are built locally from random weights, nothing is downloaded."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt.interop.hf import export_checkpoint, from_hf, load_hf, save_hf
from gpt.model.config import GPTConfig
from gpt.model.models import GPT
from helpers import FIXTURES, main_here

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(vocab_size=100, n_positions=32, n_layer=2, n_head=4, n_embd=32)


@pytest.fixture
def hf_model(tmp_path):
    """A random GPT2LMHeadModel saved with save_pretrained; LayerNorm gains and every bias
    are randomised too, so that a bias copied to the wrong place shows."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SIZES, bos_token_id=None, eos_token_id=None)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1 if p.dim() > 1 else 0.5)
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


def ids(T: int = 32) -> torch.Tensor:
    return torch.randint(0, SIZES["vocab_size"], (3, T), generator=torch.Generator().manual_seed(1))


def ours_config(**kwargs) -> GPTConfig:
    return GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=4, n_embd=32, **kwargs)


def hf_logits(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx).logits


def assert_same_logits(ours: GPT, hf, idx: torch.Tensor) -> None:
    with torch.no_grad():
        expected = hf_logits(hf, idx)
        diff = (ours.eval()(idx) - expected).abs().max().item()
    assert diff <= 1e-5, diff
    assert expected.std() > 0.1  # logits far from constant: the comparison has teeth


def test_load_hf_gpt2_gives_the_same_logits(hf_model):
    hf, path = hf_model
    ours = from_hf(path)
    assert ours.config == ours_config()
    assert_same_logits(ours, hf, ids())


def test_export_loads_in_transformers_with_the_same_logits(tmp_path):
    torch.manual_seed(0)
    for tie in (True, False):
        ours = GPT(ours_config(tie_weights=tie)).eval()
        with torch.no_grad():
            for p in ours.parameters():
                p.normal_(0.0, 0.1 if p.dim() > 1 else 0.5)
        out = save_hf(ours, tmp_path / f"ours-{tie}")
        hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
        assert hf.config.tie_word_embeddings is tie
        assert_same_logits(ours, hf, ids())
        # and back again
        assert_same_logits(from_hf(out), hf, ids())


def test_a_padded_vocabulary_exports_its_real_rows_and_imports_padded(hf_model, tmp_path):
    torch.manual_seed(0)
    for tie in (True, False):
        ours = GPT(ours_config(tie_weights=tie, padded_vocab_multiple=64)).eval()
        with torch.no_grad():
            for p in ours.parameters():
                p.normal_(0.0, 0.1 if p.dim() > 1 else 0.5)
        assert ours.transformer.wte.weight.size(0) == 128
        out = save_hf(ours, tmp_path / f"padded-{tie}")
        assert load_file(out / "model.safetensors")["transformer.wte.weight"].shape == (100, 32)
        hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
        assert hf.config.vocab_size == 100
        assert_same_logits(ours, hf, ids())
        back = from_hf(out, padded_vocab_multiple=64)  # and in again, padded
        assert back.lm_head.weight.size(0) == 128
        assert_same_logits(back, hf, ids())
    hf, path = hf_model  # a Hugging Face model into a padded one of ours
    assert_same_logits(from_hf(path, padded_vocab_multiple=64), hf, ids())


def test_the_hubs_layouts_load(hf_model, tmp_path):
    """The Hub's gpt2 files have no "transformer." prefix and still carry the attn.bias
    mask buffers; older ones are pytorch_model.bin; a bare .safetensors has no config."""
    hf, path = hf_model
    state = load_file(path / "model.safetensors")
    hub = {k.removeprefix("transformer."): v for k, v in state.items()}
    hub["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    (tmp_path / "hub").mkdir()
    save_file(hub, tmp_path / "hub" / "model.safetensors")
    (tmp_path / "hub" / "config.json").write_text((path / "config.json").read_text())
    assert_same_logits(from_hf(tmp_path / "hub"), hf, ids())

    (tmp_path / "bin").mkdir()
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((path / "config.json").read_text())
    assert_same_logits(from_hf(tmp_path / "bin"), hf, ids())

    bare = GPT(ours_config())
    load_hf(bare, tmp_path / "hub" / "model.safetensors")
    assert_same_logits(bare, hf, ids())


def test_a_shorter_context_keeps_the_first_positions(hf_model):
    hf, path = hf_model
    short = GPT(replace(ours_config(), block_size=16))
    load_hf(short, path)
    assert_same_logits(short, hf, ids(16))


def test_untied_model_from_a_tied_checkpoint_starts_tied(hf_model):
    hf, path = hf_model
    untied = GPT(ours_config(tie_weights=False))
    load_hf(untied, path)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert torch.equal(untied.lm_head.weight, untied.transformer.wte.weight)
    assert_same_logits(untied, hf, ids())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_embd=64), r"the checkpoint's wte.weight has shape \(100, 32\) but the model needs \(100, 64\)"),
        (
            dict(vocab_size=50257),
            r"the checkpoint's wte.weight has shape \(100, 32\) but the model needs \(50257, 32\)",
        ),
        (dict(block_size=64), r"the checkpoint's wpe.weight has shape \(32, 32\) but the model needs \(64, 32\)"),
        (dict(n_layer=3), "the checkpoint has no h.2.ln_1.weight, which the model needs"),
        (dict(n_layer=1), "the checkpoint has h.1.attn.c_attn.bias, which the model lacks"),
        (dict(n_head=2), "the checkpoint's config.json has n_head 4 but the model has 2"),
        (dict(pos="rope"), "Hugging Face's GPT-2 layout cannot hold a model with pos=rope"),
    ],
)
def test_checkpoints_that_do_not_fit_are_refused_by_name(hf_model, kwargs, message):
    _, path = hf_model
    base = dict(vocab_size=100, block_size=32, n_layer=2, n_head=4, n_embd=32) | kwargs
    with pytest.raises(ValueError, match=message):
        load_hf(GPT(GPTConfig(**base)), path)


def test_unsupported_hf_configs_are_refused(hf_model, tmp_path):
    _, path = hf_model
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | {"activation_function": "relu"}))
    with pytest.raises(ValueError, match="config.json has activation_function='relu'; our GPT supports 'gelu_new'"):
        from_hf(path)
    with pytest.raises(FileNotFoundError, match="no Hugging Face checkpoint at"):
        from_hf(tmp_path / "missing")


@pytest.mark.slow  # several processes
def test_finetune_config_starts_from_hf_weights_and_exports_back(small_corpus, tmp_path):
    """configs/finetune_shakespeare.yaml with a tiny random GPT-2 (vocab 50257, as the real
    one) instead of the download: fit two steps at a learning rate of 1e-20, so the weights
    stay the loaded ones; export the checkpoint; transformers reads it back and its logits
    are the original model's. Then predict from the checkpoint with the HF folder gone:
    a checkpoint, once written, carries the weights itself."""
    torch.manual_seed(0)
    sizes = dict(vocab_size=50257, n_positions=64, n_layer=2, n_head=2, n_embd=16)
    original = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes)).eval()
    original.save_pretrained(tmp_path / "tiny-gpt2")
    tiny = "--model.preset null --model.n_layer 2 --model.n_head 2 --model.n_embd 16 --model.block_size 32"
    frozen = "--model.dropout 0.0 --model.learning_rate 1e-20 --model.min_lr 0 --model.val_sample_tokens 0"
    cpu = "--trainer.precision 32-true --trainer.accelerator cpu --trainer.enable_progress_bar false"
    short = "--trainer.max_steps 2 --trainer.accumulate_grad_batches 1 --trainer.val_check_interval 2"
    data = ["--trainer.limit_val_batches", "2", "--data.corpus", str(small_corpus), "--data.batch_size", "2"]
    config = ["--config", str(ROOT / "configs" / "finetune_shakespeare.yaml")]
    init_from = ["--model.init_from", str(tmp_path / "tiny-gpt2")]
    settings = f"{tiny} {frozen} {cpu} {short}".split()
    result = main_here("fit", *config, *settings, *init_from, *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "started from " in result.stderr and "new token rows" not in result.stderr  # GPT-2 weights, as they are
    (checkpoint,) = (tmp_path / "lightning_logs").rglob("last.ckpt")

    export = subprocess.run(
        [sys.executable, "-m", "gpt.interop.hf", str(checkpoint), str(tmp_path / "exported")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    exported = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "exported").eval()
    assert exported.config.eos_token_id == 50256  # <|endoftext|> of the checkpoint's gpt2 tokenizer
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(2))
    diff = (hf_logits(exported, idx) - hf_logits(original, idx)).abs().max().item()
    assert diff <= 1e-5, diff

    shutil.rmtree(tmp_path / "tiny-gpt2")
    settings = "--data.prompt ROMEO: --model.sampling.max_new_tokens 5".split()
    out = main_here("predict", "--ckpt_path", str(checkpoint), *settings, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ROMEO:")


def test_init_from_loads_at_setup_and_never_over_a_restored_checkpoint(hf_model, tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from gpt.train.lit_module import LitGPT

    hf, path = hf_model
    x = ids()
    data = DataLoader(TensorDataset(x, x), batch_size=3)
    sizes = dict(vocab_size=100, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    module = LitGPT(**sizes, init_from=str(path), val_sample_tokens=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, data, verbose=False)
    assert_same_logits(module.model, hf, x)  # loaded in setup

    with torch.no_grad():
        module.model.transformer.wte.weight.add_(1.0)  # "fine-tuned"
    trainer.save_checkpoint(tmp_path / "tuned.ckpt")
    restored = LitGPT.load_from_checkpoint(tmp_path / "tuned.ckpt", weights_only=True)
    trainer.validate(restored, data, verbose=False)
    assert torch.equal(restored.model.transformer.wte.weight, module.model.transformer.wte.weight)


def test_only_a_causal_gpt_in_gpt2_layout_exports(tmp_path):
    with pytest.raises(ValueError, match="is a masked language model .*: only causal checkpoints export"):
        export_checkpoint(str(FIXTURES / "legacy" / "bpe_masked.ckpt"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="holds a teaching model \\(arch 'blocks'\\); only arch gpt exports"):
        export_checkpoint(str(FIXTURES / "legacy" / "char_blocks.ckpt"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="cannot hold a model with pos=rope"):
        save_hf(GPT(ours_config(pos="rope")), tmp_path / "out")
    with pytest.raises(ValueError, match="causal=False"):
        save_hf(GPT(ours_config(causal=False)), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="the output folder .*file' is a file"):
        save_hf(GPT(ours_config()), tmp_path / "file")


@pytest.mark.parametrize(
    "checkpoint, out, message",
    [
        ("bpe_masked.ckpt", "out", "is a masked language model (attention both ways)"),
        ("char_blocks.ckpt", "out", "holds a teaching model (arch 'blocks'); only arch gpt exports"),
        ("char_gpt2.ckpt", "a_file", "is a file; give the name of a folder"),
        ("missing.ckpt", "out", "checkpoint '"),
    ],
)
def test_export_command_errors_are_one_line(tmp_path, checkpoint, out, message):
    (tmp_path / "a_file").write_text("x")
    args = [str(FIXTURES / "legacy" / checkpoint), str(tmp_path / out)]
    result = subprocess.run([sys.executable, "-m", "gpt.interop.hf", *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not (tmp_path / "out").exists()
