import pytest
import torch

from gpt.masking import IGNORE_INDEX, mask_tokens

MASK, N_ORDINARY = 99, 90


def test_bert_proportions():
    ids = torch.randint(0, N_ORDINARY, (64, 512), generator=torch.Generator().manual_seed(0))
    inputs, targets = mask_tokens(ids, MASK, N_ORDINARY, 0.15, generator=torch.Generator().manual_seed(1))
    selected = targets != IGNORE_INDEX
    assert selected.float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(targets[selected], ids[selected])  # the targets are the originals
    assert torch.equal(inputs[~selected], ids[~selected])  # unselected tokens untouched
    masked = inputs[selected] == MASK
    kept = inputs[selected] == ids[selected]
    assert masked.float().mean().item() == pytest.approx(0.8, abs=0.01)
    # 10% kept on purpose, plus the random draws that hit the original id (1 in 90)
    assert kept.float().mean().item() == pytest.approx(0.1 + 0.1 / N_ORDINARY, abs=0.01)
    assert inputs.max() == MASK and inputs[inputs != MASK].max() < N_ORDINARY  # random ids are ordinary


def test_padding_is_never_selected_and_masking_is_seeded():
    ids = torch.randint(0, N_ORDINARY, (8, 40), generator=torch.Generator().manual_seed(0))
    real = torch.zeros(8, 40, dtype=torch.bool)
    real[:, :10] = True
    a = mask_tokens(ids, MASK, N_ORDINARY, 0.5, real, torch.Generator().manual_seed(3))
    b = mask_tokens(ids, MASK, N_ORDINARY, 0.5, real, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert (a[1][~real] == IGNORE_INDEX).all() and torch.equal(a[0][~real], ids[~real])
    assert (a[1][real] != IGNORE_INDEX).any()


def test_at_least_one_target_and_bad_probabilities():
    ids = torch.tensor([[5, 6, 7]])
    _, targets = mask_tokens(ids, MASK, N_ORDINARY, 0.001, generator=torch.Generator().manual_seed(0))
    assert (targets != IGNORE_INDEX).sum() == 1
    for prob in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"mask_prob must be in \\(0, 1\\), got {prob}"):
            mask_tokens(ids, MASK, N_ORDINARY, prob)
