"""gpt/model/optim.py: AdamW's groups, the warmup + cosine schedule, and the scheduler that applies it."""

import copy

import pytest
import torch

from gpt.model.models import GPT
from gpt.model.optim import adamw, cosine_lr, describe_groups, param_groups, warmup_cosine
from helpers import smallest_config, tiny_config


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
    c = tiny_config(vocab_size=65)
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
    model = GPT(smallest_config())
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
    model = GPT(smallest_config())
    with pytest.raises(ValueError, match=message):
        warmup_cosine(adamw(model, lr, 0.1), warmup_steps=0, decay_steps=10, min_lr=min_lr)


def test_adamw_runs_fused_when_every_parameter_is_on_one_kind_of_device():
    from types import SimpleNamespace

    from gpt.model.optim import use_fused

    on = lambda device: SimpleNamespace(device=torch.device(device))  # noqa: E731 (no CUDA needed)
    assert use_fused([on("cuda:0"), on("cuda:1")]) and use_fused([on("cpu")])
    assert not use_fused([on("cuda:0"), on("cpu")])  # offloaded to the CPU: torch's default (foreach)
    assert not use_fused([on("meta")]) and not use_fused([])
    optimizer = adamw(GPT(smallest_config(block_size=4)), 1e-3, 0.1)
    assert optimizer.defaults["fused"] is True  # on this CPU


def test_fused_adamw_on_the_cpu_steps_as_the_loop_does():
    """The fused CPU kernel is the same AdamW as torch's single-tensor loop: given the same
    gradients for 20 steps, the weights differ by no more than float rounding can make them.

    The bound, from the arithmetic: fp32 rounds a value by at most 2^-24 of itself. A step
    rounds a weight twice at its own scale (the decay, then the update added) and its update at
    the update's scale some 50 times: m and v a few times a step each, carried on by beta1 and
    beta2 (20 steps of v's rounding add up to 18 steps' worth at beta2 0.99), then the square
    root, eps, the division. The two compute in another order and vectorise differently on
    AVX2 and AVX512 (ATEN_CPU_CAPABILITY), so the last bits differ by CPU; a test feeding each
    model its own gradients would instead let those bits grow through the network."""
    torch.manual_seed(0)
    models = [GPT(smallest_config(n_head=2, n_embd=16)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused, loop = (list(m.parameters()) for m in models)
    optimizers = [adamw(models[0], 1e-2, 0.1, fused=True), adamw(models[1], 1e-2, 0.1, fused=False)]
    x = torch.randint(0, 10, (4, 8))
    start = [p.detach().clone() for p in loop]
    unit = torch.finfo(torch.float32).eps / 2  # 2^-24
    bound = [torch.zeros_like(p) for p in loop]
    for _ in range(20):
        optimizers[0].zero_grad()
        models[0](x).square().mean().backward()
        for a, b in zip(fused, loop):
            b.grad = a.grad.clone()
        before = [p.detach().clone() for p in loop]
        for optimizer in optimizers:
            optimizer.step()
        for limit, p, old in zip(bound, loop, before):
            limit += unit * (2 * old.abs() + 50 * (p.detach() - old).abs())
    for a, b, limit in zip(fused, loop, bound):
        difference = (a - b).detach().abs()
        assert (difference <= limit).all(), float((difference / limit).max())
    moved = max(float((p.detach() - p0).abs().max()) for p, p0 in zip(loop, start))
    assert moved > 1000 * max(float(limit.max()) for limit in bound)  # the bound is tight beside the steps


def test_param_groups_tell_matrices_by_module_not_shape():
    """FSDP hands the optimizer each weight as a flat 1-D shard: the groups must not change."""
    model = GPT(tiny_config(vocab_size=65))
    before = [[id(p) for p in g["params"]] for g in param_groups(model, 0.1)]
    for p in model.parameters():
        p.data = p.data.flatten()
    assert [[id(p) for p in g["params"]] for g in param_groups(model, 0.1)] == before


def _fsdp_worker(rank: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from gpt.model.layers import Block

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=65, padded_vocab_multiple=64))
    wrapped = FSDP(model, auto_wrap_policy=ModuleWrapPolicy({Block}), use_orig_params=True, device_id="cpu")
    groups = [len(g["params"]) for g in param_groups(model, 0.1)]
    x = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(1))
    loss = F.cross_entropy(wrapped(x).flatten(0, 1), x.flatten())
    if rank == 0:
        torch.save({"groups": groups, "dims": {p.dim() for p in model.parameters()}, "loss": loss.item()}, out)
    dist.destroy_process_group()


@pytest.mark.slow  # two processes
def test_under_fsdp_the_weights_keep_their_groups_and_the_loss_is_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp_worker, args=(port, str(tmp_path / "out.pt")), nprocs=2)
    sharded = torch.load(tmp_path / "out.pt")
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=65, padded_vocab_multiple=64))
    x = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(1))
    assert sharded["dims"] == {1}  # FSDP's flat shards: a weight's shape no longer says it is a matrix
    assert sharded["groups"] == [len(g["params"]) for g in param_groups(model, 0.1)]
    loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).item()
    assert sharded["loss"] == pytest.approx(loss, abs=1e-5)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    from gpt.model.optim import muon_adamw

    model = GPT(tiny_config())
    optimizer = muon_adamw(model, learning_rate=1e-2, weight_decay=0.1)
    muon, *adamw_groups = optimizer.param_groups
    block_linears = [m.weight for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".h." in n]
    assert muon["name"] == "muon" and len(muon["params"]) == len(block_linears) == 8
    assert {id(p) for p in muon["params"]} == {id(p) for p in block_linears}
    everything = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(everything) == sorted(id(p) for p in model.parameters())  # each once, none missed
    assert id(model.transformer.wte.weight) in {id(p) for p in adamw_groups[0]["params"]}  # the (tied) embedding


def test_muon_resumed_from_its_state_dict_steps_as_if_never_stopped():
    from gpt.model.optim import muon_adamw

    def train(model, optimizer, steps, seed):
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, 50, (4, 17), generator=g)
            logits = model(idx[:, :-1])
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()).backward()
            optimizer.step()
            optimizer.zero_grad()

    torch.manual_seed(0)
    straight = GPT(tiny_config())
    resumed = copy.deepcopy(straight)
    optimizer = muon_adamw(straight, 1e-2, 0.1)
    train(straight, optimizer, 3, seed=1)
    saved_model, saved_optimizer = copy.deepcopy(straight.state_dict()), copy.deepcopy(optimizer.state_dict())
    train(straight, optimizer, 3, seed=2)
    resumed.load_state_dict(saved_model)
    again = muon_adamw(resumed, 1e-2, 0.1)
    again.load_state_dict(saved_optimizer)
    train(resumed, again, 3, seed=2)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert len(again.state) == len(list(straight.parameters()))  # both optimizers' moments came back


def test_muon_with_newton_schulz_in_bf16_is_torchs_muon_to_the_bit(monkeypatch):
    """Ours differs from torch.optim.Muon only in the dtype of Newton-Schulz: in bf16 (a GPU's)
    it writes torch's floats, its state dict is torch's, and each loads the other's."""
    import gpt.model.muon as muon

    monkeypatch.setattr(muon, "newton_schulz_dtype", lambda device: torch.bfloat16)
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(64, 32)), torch.nn.Parameter(torch.randn(16, 48))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    settings = dict(lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    optimizers = muon.Muon(ours, **settings), torch.optim.Muon(theirs, **settings)
    for _ in range(4):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        for optimizer in optimizers:
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert all(float((a - a0).abs().max()) > 1e-3 for a, a0 in zip(ours, start))  # the steps moved them
    mine, torchs = (o.state_dict() for o in optimizers)
    assert mine["param_groups"] == torchs["param_groups"]
    optimizers[1].load_state_dict(mine)
    optimizers[0].load_state_dict(torchs)


def test_newton_schulz_in_fp32_orthogonalises_as_bf16_does():
    """fp32 (a CPU's) and bf16 give the same matrix to bf16's precision, and either is nearly
    orthogonal: Muon's quintic leaves every singular value between about 0.7 and 1.2."""
    from gpt.model.muon import newton_schulz, newton_schulz_dtype

    G = torch.randn(96, 32, generator=torch.Generator().manual_seed(0))
    steps = dict(coefficients=(3.4445, -4.7750, 2.0315), steps=5, eps=1e-7)
    fp32, bf16 = (newton_schulz(G, **steps, dtype=dtype) for dtype in (torch.float32, torch.bfloat16))
    assert fp32.dtype == torch.float32 and fp32.shape == G.shape
    assert float((fp32 - bf16.float()).abs().max()) < 0.05  # bf16 keeps 8 bits: 2^-8 of values near 1, a few times
    singular = torch.linalg.svdvals(fp32)
    assert 0.6 < float(singular.min()) and float(singular.max()) < 1.25
    assert float(torch.linalg.svdvals(G).max() / torch.linalg.svdvals(G).min()) > 2  # G itself was not
    assert newton_schulz_dtype(torch.device("cpu")) == torch.float32
    assert newton_schulz_dtype(torch.device("cuda")) == torch.bfloat16


def test_the_optimizer_is_fused_unless_fp16_scales_the_gradients():
    """Lightning clips the gradients of a fused AdamW under bf16 (nothing is scaled), and an
    fp16 run, whose GradScaler unscales before clipping, gets an unfused one."""
    from types import SimpleNamespace

    from gpt.train.runtime import make_optimizer

    model = GPT(smallest_config(block_size=4))
    for optimizer_name in ("adamw", "muon"):
        settings = dict(learning_rate=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99)
        hp = SimpleNamespace(**settings, get=lambda key, default, name=optimizer_name: name)
        bf16 = make_optimizer(hp, model, SimpleNamespace(precision_plugin=SimpleNamespace(scaler=None)))
        fp16 = make_optimizer(hp, model, SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object())))
        adam = lambda opt: opt.optimizers[1] if optimizer_name == "muon" else opt  # noqa: E731
        assert adam(bf16).defaults["fused"] is True and not getattr(bf16, "_step_supports_amp_scaling", False)
        assert adam(fp16).defaults["fused"] is False
