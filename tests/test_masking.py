"""gpt/model/masking.py: BERT's selection of the tokens to hide, and filling a prompt's <|mask|>."""

import pytest
import torch

from gpt.model.masking import IGNORE_INDEX, fill_mask, format_fill, mask_batch, mask_tokens
from gpt.model.models import GPT
from gpt.tokenizers import MASK as MASK_TOKEN
from gpt.tokenizers import PAD, CharTokenizer
from helpers import tiny_config

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


def test_mask_batch_takes_the_ids_from_the_tokenizer():
    tokenizer = CharTokenizer("abc", special_tokens=[PAD, MASK_TOKEN])  # <|pad|> 3, <|mask|> 4
    ids = torch.randint(0, 3, (16, 64), generator=torch.Generator().manual_seed(0))
    inputs, targets = mask_batch(ids, tokenizer, 0.5, generator=torch.Generator().manual_seed(1))
    assert set(inputs.unique().tolist()) == {0, 1, 2, 4}  # <|mask|> in, <|pad|> never drawn
    assert torch.equal(targets[targets != IGNORE_INDEX], ids[targets != IGNORE_INDEX])


@pytest.fixture
def masked_model():
    torch.manual_seed(0)
    tokenizer = CharTokenizer("abcdefgh", special_tokens=[PAD, MASK_TOKEN])
    model = GPT(tiny_config(vocab_size=tokenizer.vocab_size, causal=False)).eval()
    with torch.no_grad():  # large weights: a peaked distribution that depends on the context
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    return model, tokenizer


def test_fill_mask_fills_each_mask_with_its_best_candidate(masked_model):
    model, tokenizer = masked_model
    result = fill_mask(model, tokenizer, f"ab{MASK_TOKEN}d{MASK_TOKEN}", k=3)
    assert len(result["candidates"]) == 2 and all(len(c) == 3 for c in result["candidates"])
    for position, candidates in zip((2, 4), result["candidates"]):
        assert result["completion"][position] == candidates[0][0]  # the best candidate fills the mask
        probabilities = [p for _, p in candidates]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
        assert all(text in "abcdefgh" for text, _ in candidates)  # never <|pad|> or <|mask|>
    assert result["completion"][:2] == "ab" and result["completion"][3] == "d"
    printed = format_fill(result).splitlines()
    assert printed[0] == result["completion"] and printed[1].startswith(f"  {MASK_TOKEN} 1: ")


def test_fill_mask_refuses_a_prompt_without_a_mask_or_too_long(masked_model):
    model, tokenizer = masked_model
    with pytest.raises(ValueError, match="the prompt has no <\\|mask\\|> to fill"):
        fill_mask(model, tokenizer, "abc")
    with pytest.raises(ValueError, match="the prompt has 17 tokens; the model reads at most 16"):
        fill_mask(model, tokenizer, "a" * 16 + MASK_TOKEN)


def test_special_tokens_are_never_hidden_nor_predicted():
    tokenizer = CharTokenizer("abc", special_tokens=["<|endoftext|>", PAD, MASK_TOKEN])  # eot 3, pad 4, mask 5
    ids = torch.randint(0, 4, (32, 64), generator=torch.Generator().manual_seed(0))  # <|endoftext|> among them
    assert (ids == 3).sum() > 100
    inputs, targets = mask_batch(ids, tokenizer, 0.5, generator=torch.Generator().manual_seed(1))
    assert (targets == 3).sum() == 0 and torch.equal(inputs[ids == 3], ids[ids == 3])  # left as they are
    selected, ordinary = (targets != IGNORE_INDEX).float().mean().item(), (ids != 3).float().mean().item()
    assert selected == pytest.approx(0.5 * ordinary, abs=0.02)  # half of the ordinary tokens
