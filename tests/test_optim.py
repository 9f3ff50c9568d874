"""gpt/optim.py: AdamW's groups, the warmup + cosine schedule, and the scheduler that applies it."""

import pytest
import torch

from gpt.config import GPTConfig
from gpt.model import GPT
from gpt.optim import adamw, cosine_lr, describe_groups, param_groups, warmup_cosine


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


def test_adamw_and_its_schedule_step_the_learning_rate_of_every_group():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))
    optimizer = adamw(model, learning_rate=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    scheduler = warmup_cosine(optimizer, warmup_steps=3, decay_steps=10, min_lr=1e-3)
    seen = []
    for _ in range(12):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert seen == [[pytest.approx(cosine_lr(s, 1e-2, 1e-3, 3, 10))] * 2 for s in range(12)]
    # wte 80 + wpe 64 + four matrices 768; biases 72 + three LayerNorms' gains and biases 48
    assert describe_groups(optimizer.param_groups) == (
        "6 tensors, 912 parameters with weight decay 0.1; 10 tensors, 120 parameters with weight decay 0.0"
    )


@pytest.mark.parametrize(
    "lr, min_lr, message",
    [(1e-3, 1e-2, "need 0 <= min_lr <= learning_rate"), (0.0, 0.0, "learning_rate must be > 0, got 0.0")],
)
def test_schedules_that_make_no_sense_are_refused(lr, min_lr, message):
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match=message):
        warmup_cosine(adamw(model, lr, 0.1), warmup_steps=0, decay_steps=10, min_lr=min_lr)
