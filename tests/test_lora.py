"""gpt/model/lora.py and gpt/model/dpo.py: adapters beside frozen weights, merged to the same
model; DPO's loss as the paper writes it; and LitGPT training only what it should."""

import math

import pytest
import torch

from gpt.model.dpo import dpo_loss, sequence_logprobs
from gpt.model.lora import LoRALinear, LoRASettings, adapter_state, adapters_off, apply_lora, merge_lora
from gpt.model.masking import IGNORE_INDEX
from gpt.model.models import GPT, build_model
from gpt.train import finetune
from gpt.train.lit_module import LitGPT
from helpers import tiny_config


def lora_gpt(**settings) -> GPT:
    torch.manual_seed(0)
    model = apply_lora(GPT(tiny_config()), LoRASettings(**settings))
    for layer in model.modules():  # adapters that do something (B starts at zero)
        if isinstance(layer, LoRALinear):
            torch.nn.init.normal_(layer.lora_B, std=0.5)
    return model.eval()


def test_only_the_adapters_train_and_they_are_r_by_in_plus_out():
    model = apply_lora(GPT(tiny_config()), LoRASettings(r=4, targets=("attn", "mlp")))
    trainable = adapter_state(model)
    assert all(name.endswith(("lora_A", "lora_B")) for name in trainable)
    C, n_layer = 32, 2
    per_layer = 4 * (C + 3 * C) + 4 * (C + 4 * C) + 4 * (4 * C + C)  # c_attn, c_fc, mlp.c_proj
    assert sum(p.numel() for p in trainable.values()) == n_layer * per_layer
    assert not any(p.requires_grad for name, p in model.named_parameters() if "lora_" not in name)


def test_a_new_adapter_changes_nothing_and_off_is_the_base_model():
    torch.manual_seed(0)
    base = GPT(tiny_config()).eval()
    idx = torch.randint(0, 50, (2, 16))
    before = base(idx)
    model = apply_lora(base, LoRASettings())
    torch.testing.assert_close(model(idx), before, rtol=0, atol=0)  # B = 0: the pretrained model exactly
    tuned = lora_gpt()
    with adapters_off(tuned):
        off = tuned(idx)
    assert (tuned(idx) - off).abs().max() > 1e-2


@pytest.mark.parametrize("targets", [("attn", "proj", "mlp"), ("attn",), ("mlp", "proj")])
def test_merging_gives_a_plain_gpt_with_the_same_logits(targets):
    model = lora_gpt(targets=targets)
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(1))
    unmerged = model(idx)
    merged = merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert set(merged.state_dict()) == set(GPT(tiny_config()).state_dict())  # a plain GPT's weights
    assert (merged(idx) - unmerged).abs().max() < 1e-5


def test_lora_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="model.lora.r must be a positive integer"):
        LoRASettings(r=0)
    with pytest.raises(ValueError, match="model.lora.targets must be some of attn, proj, mlp, head"):
        LoRASettings(targets=("wte",))
    with pytest.raises(ValueError, match="arch 'blocks' is a teaching model: use arch gpt"):
        apply_lora(build_model(tiny_config(arch="blocks")), LoRASettings())
    with pytest.raises(ValueError, match="the LM head shares its weight with the token embedding"):
        apply_lora(GPT(tiny_config()), LoRASettings(targets=("head",)))
    assert isinstance(
        apply_lora(GPT(tiny_config(tie_weights=False)), LoRASettings(targets=("head",))).lm_head, LoRALinear
    )


def test_dpo_loss_is_the_papers():
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])
    ref_chosen, ref_rejected = torch.tensor([-3.5, -5.0]), torch.tensor([-3.5, -4.5])
    loss, r_chosen, r_rejected = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    margins = [0.1 * ((-3.0 + 3.5) - (-4.0 + 3.5)), 0.1 * ((-5.0 + 5.0) - (-4.0 + 4.5))]
    assert loss.item() == pytest.approx(sum(-math.log(1 / (1 + math.exp(-m))) for m in margins) / 2)
    assert r_chosen.tolist() == pytest.approx([0.05, 0.0]) and r_rejected.tolist() == pytest.approx([-0.05, 0.05])
    same = dpo_loss(chosen, rejected, chosen, rejected, beta=0.5)[0]
    assert same.item() == pytest.approx(math.log(2))  # the policy is the reference: no preference yet


def test_sequence_logprobs_sum_the_reply_tokens_only():
    logits = torch.randn(2, 4, 10, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX], [1, 2, 3, 4]])
    logp = torch.log_softmax(logits, -1)
    expected = [logp[0, 1, 3] + logp[0, 2, 4], sum(logp[1, t, t + 1] for t in range(4))]
    assert sequence_logprobs(logits, targets).tolist() == pytest.approx([e.item() for e in expected])


def test_dpo_trains_the_policy_towards_the_chosen_reply_and_never_the_reference():
    torch.manual_seed(0)
    sizes = {k: v for k, v in vars(tiny_config()).items() if k != "causal"}
    module = LitGPT(**sizes, objective="dpo")
    finetune.prepare(module)  # the reference: the model as it starts, frozen
    assert all(not p.requires_grad for p in module.reference.parameters())
    x = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    y = torch.full((2, 12), IGNORE_INDEX)
    y[:, 6:] = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 12, dtype=torch.bool)
    module.log_dict = module.log = lambda *a, **k: None
    reference = {k: v.clone() for k, v in module.reference.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in module.model.parameters()], lr=1e-2)
    margins = []
    for _ in range(10):
        loss = finetune.dpo_step(module, (x, y, mask), "train", log_values=False)
        policy = sequence_logprobs(module.model(x, attention_mask=mask), y)
        ref = sequence_logprobs(module.reference(x, attention_mask=mask), y)
        margins.append(((policy[0] - ref[0]) - (policy[1] - ref[1])).item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert margins[0] == pytest.approx(0.0, abs=1e-5) and margins[-1] > 1.0  # the chosen pulls ahead
    assert all(torch.equal(v, module.reference.state_dict()[k]) for k, v in reference.items())
