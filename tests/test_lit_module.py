import math

import lightning as L
import pytest
import torch

from gpt.lit_module import LitGPT, cosine_lr, param_groups
from gpt.config import GPTConfig, preset
from gpt.model import GPT, AttentionLM, Bigram
from gpt.tokenizers import CharTokenizer


def test_lr_schedule_points():
    args = dict(learning_rate=1e-3, min_lr=1e-4, warmup_steps=100, decay_steps=5000)
    assert cosine_lr(0, **args) == pytest.approx(1e-3 / 101)
    assert cosine_lr(100, **args) == pytest.approx(1e-3)  # end of warmup: the peak
    assert cosine_lr(2550, **args) == pytest.approx((1e-3 + 1e-4) / 2)  # half way down the cosine
    assert cosine_lr(5000, **args) == pytest.approx(1e-4)  # max_steps: min_lr
    assert cosine_lr(9000, **args) == pytest.approx(1e-4)


def test_lr_schedule_is_monotonic_after_warmup():
    lrs = [cosine_lr(s, 1e-3, 1e-4, 10, 200) for s in range(201)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_param_groups_decay_matrices_only():
    c = GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(c)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = sorted(names[id(p)] for p in decay["params"])
    no_decay_names = sorted(names[id(p)] for p in no_decay["params"])
    # wte (also the LM head, counted once), wpe, and 4 Linear weights per block
    assert len(decay_names) == 2 + 4 * c.n_layer
    assert "transformer.wte.weight" in decay_names and "transformer.wpe.weight" in decay_names
    assert all(n.endswith(".bias") or "ln_" in n for n in no_decay_names)
    # biases: 4 Linear + 2 LayerNorm per block; LayerNorm gains: 2 per block; final LayerNorm: 2
    assert len(no_decay_names) == 8 * c.n_layer + 2
    n_decay = sum(p.numel() for p in decay["params"])
    n_no_decay = sum(p.numel() for p in no_decay["params"])
    assert n_decay + n_no_decay == model.num_params()


def test_scheduler_under_trainer_steps_every_optimizer_step(tmp_path):
    torch.manual_seed(0)
    module = LitGPT(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8, dropout=0.0,
                    learning_rate=1e-2, min_lr=1e-3, warmup_steps=3, val_sample_tokens=0)  # fmt: skip
    data = torch.utils.data.DataLoader(
        [(torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,))) for _ in range(64)], batch_size=4
    )
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Record()], default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, train_dataloaders=data)
    assert lrs == pytest.approx([cosine_lr(s, 1e-2, 1e-3, 3, 10) for s in range(10)])


def test_tokenizer_travels_in_checkpoint():
    module = LitGPT(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8)
    module.tokenizer = CharTokenizer("abcde")
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    fresh = LitGPT(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8)
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.tokenizer.chars == "abcde"


def test_checkpoint_tokenizer_must_fit_vocab_size():
    module = LitGPT(vocab_size=6, block_size=8, n_layer=1, n_head=1, n_embd=8)
    with pytest.raises(ValueError, match="tokenizer has 5 tokens but its model has vocab_size 6"):
        module.on_load_checkpoint({"tokenizer": CharTokenizer("abcde").state_dict()})


def test_sampling_settings_not_saved_as_hyperparameters():
    module = LitGPT(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8, temperature=0.5, top_k=3)
    assert "temperature" not in module.hparams and "top_k" not in module.hparams
    assert module.hparams.n_embd == 8 and module.hparams.vocab_size == 5


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        LitGPT(temperature=-0.1)
    with pytest.raises(ValueError, match="need 0 <= min_lr <= learning_rate"):
        LitGPT(learning_rate=1e-4, min_lr=1e-3)


def test_complete_batches_by_length_and_keeps_the_order(capsys):
    torch.manual_seed(0)
    module = LitGPT(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8, dropout=0.0, max_new_tokens=20,
                    temperature=1.0).eval()  # fmt: skip
    module.tokenizer = CharTokenizer("abcde")
    prompts = ["ab", "c", "ab", None, "ab"]
    results = module.complete(prompts, generator=torch.Generator().manual_seed(1))
    assert [r.prompt for r in results] == prompts
    assert all(len(r.text) == 20 and r.finish == "length" for r in results)
    assert len({r.text for r in results}) > 1  # one batch, different samples
    assert capsys.readouterr().out == ""  # printing is predict's
    with pytest.raises(ValueError, match="character 'z' at position 1"):
        module.complete(["ab", "az"])  # refused before any sampling


def test_preset_with_overrides_builds_the_model():
    module = LitGPT(preset="baby", vocab_size=65, n_layer=1)
    assert module.config == preset("baby", n_layer=1)
    assert module.config.block_size == 256 and module.config.bias is False
    assert isinstance(module.model, GPT) and len(module.model.transformer.h) == 1


def test_arch_picks_the_teaching_model():
    module = LitGPT(arch="multi_head", vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8)
    assert isinstance(module.model, AttentionLM) and len(module.model.attn.heads) == 2
    assert isinstance(LitGPT(arch="bigram", vocab_size=5, block_size=8).model, Bigram)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'gpt3'; known presets: gpt2, gpt2-medium, gpt2-large, gpt2-xl, baby"):
        LitGPT(preset="gpt3")
