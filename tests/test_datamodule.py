"""gpt/train/datamodule.py: the splits, the batches and the tokenizer a GPTDataModule serves."""

import pytest
import torch

from gpt.model.masking import IGNORE_INDEX
from gpt.tokenizers import MASK, PAD
from gpt.tokenizers.settings import tokenizer_config
from gpt.train.datamodule import GPTDataModule
from helpers import FIXTURES, LINES_TEXT, SPEECHES_TEXT, write_jsonl


def make_dm(tmp_path, corpus, **kwargs) -> GPTDataModule:
    kwargs = dict(block_size=32, batch_size=4) | kwargs
    return GPTDataModule(corpus=str(corpus), data_dir=str(tmp_path / "data"), **kwargs)


def ready(dm: GPTDataModule) -> GPTDataModule:
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture
def speeches(tmp_path):
    path = tmp_path / "speeches.txt"
    path.write_text(SPEECHES_TEXT, encoding="utf-8")
    return path


def test_split_is_first_90_last_10(tmp_path, small_corpus):
    text = small_corpus.read_text()
    dm = ready(make_dm(tmp_path, small_corpus))
    n_train = int(len(text) * 0.9)
    assert len(dm.train_ids) == n_train
    assert len(dm.val_ids) == len(text) - n_train
    assert dm.tokenizer.decode(dm.val_ids.tolist()) == text[n_train:]
    assert dm.val_chars_per_token == 1.0


def test_batches_are_shifted_windows(tmp_path, small_corpus):
    dm = ready(make_dm(tmp_path, small_corpus))
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 32)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert dm.tokenizer.decode(x[0].tolist()) in small_corpus.read_text()


def test_shuffle_is_seeded(tmp_path, small_corpus):
    def first_batch(seed):
        return next(iter(ready(make_dm(tmp_path, small_corpus, seed=seed)).train_dataloader()))[0]

    assert torch.equal(first_batch(1), first_batch(1))
    assert not torch.equal(first_batch(1), first_batch(2))


def test_validation_covers_whole_split(tmp_path, small_corpus):
    dm = ready(make_dm(tmp_path, small_corpus, batch_size=7))
    scored = sum(int((y != IGNORE_INDEX).sum()) for _, y in dm.val_dataloader())
    assert scored == len(dm.val_ids) - 1


def test_corpus_shorter_than_a_window(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("to be or not to be " * 10)  # 190 characters: 19 for validation
    dm = make_dm(tmp_path, corpus)
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"validation split has 19: fewer than block_size \+ 1 = 33"):
        dm.setup("fit")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(stride=0), "stride must be >= 1, got 0"),
        (dict(block_size=0), "block_size must be >= 1, got 0"),
        (dict(batch_size=-1), "batch_size must be >= 1, got -1"),
        (dict(num_samples=0), "num_samples must be >= 1, got 0"),
        (dict(prompt=""), "prompt is empty"),
        (dict(prompt="a", prompts_file="p.txt"), "give data.prompt or data.prompts_file, not both"),
        (dict(val_fraction=1.5), r"val_fraction must be in \(0, 1\), got 1.5"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTDataModule(**kwargs)


def test_tiny_shakespeare_split_matches_nanogpt(tmp_path, shakespeare):
    dm = ready(make_dm(tmp_path, shakespeare, block_size=256))
    assert dm.vocab_size == 65
    # nanoGPT's shakespeare_char/prepare.py: "train has 1,003,854 tokens, val has 111,540 tokens"
    assert (len(dm.train_ids), len(dm.val_ids)) == (1_003_854, 111_540)


def test_gpt2_split_and_characters_per_token(tmp_path, shakespeare):
    dm = make_dm(tmp_path, shakespeare, tokenizer=tokenizer_config("tiktoken"))
    dm.setup("fit")
    # nanoGPT's data/shakespeare/prepare.py: 301,966 train + 36,059 val tokens
    assert len(dm.train_ids) + len(dm.val_ids) == 338_025 and dm.vocab_size == 50257
    assert dm.val_chars_per_token == pytest.approx(3.083, abs=1e-3)  # characters per scored val token


def test_the_tokenizer_comes_from_a_checkpoint_when_given():
    dm = GPTDataModule(corpus="missing.txt", tokenizer_from=str(FIXTURES / "legacy" / "char_gpt2.ckpt"))
    assert dm.tokenizer.decode(dm.tokenizer.encode(LINES_TEXT)) == LINES_TEXT  # no corpus needed
    assert dm.vocab_size == len(set(LINES_TEXT))


# ---- examples of natural length


def test_paragraphs_are_examples_cut_and_padded(tmp_path, speeches):
    dm = make_dm(tmp_path, speeches, mode="paragraphs")
    assert dm.vocab_size == len(set(SPEECHES_TEXT)) + 2  # the characters, then <|pad|> and <|mask|>
    dm.setup("fit")
    assert len(dm.train_ids) + len(dm.val_ids) == 60 and len(dm.val_ids) == 6
    first = dm.tokenizer.decode(dm.train_ids[0].tolist())
    assert first == ("CITIZEN 0:\nSpeak, speak. \nWe are resolved.\n")[:33]  # block_size + 1 for x and y
    x, y, attention_mask = next(iter(dm.val_dataloader()))
    pad = dm.tokenizer.special_tokens[PAD]
    assert x.shape == y.shape == attention_mask.shape and x.size(1) == 32
    assert (x[~attention_mask] == pad).all() and (y[~attention_mask] == IGNORE_INDEX).all()
    n = attention_mask[0].sum()
    assert torch.equal(y[0, : n - 1], x[0, 1:n])  # y is x shifted by one


def test_lines_mode_and_masked_examples_keep_block_size_tokens(tmp_path, speeches):
    dm = make_dm(tmp_path, speeches, mode="lines", objective="masked")
    dm.setup("fit")
    assert all(len(e) <= 32 for e in dm.train_ids)
    assert dm.tokenizer.decode(dm.train_ids[1].tolist()) == "Speak, speak. \n"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(objective="masked", tokenizer=tokenizer_config("tiktoken", encoding="gpt2")),
            "objective masked needs a <|mask|> token",
        ),
        (
            dict(mode="paragraphs", tokenizer=tokenizer_config("tiktoken", encoding="gpt2")),
            "data.mode paragraphs needs a <|pad|> token",
        ),
    ],
)
def test_tokenizers_without_the_special_tokens_are_refused(tmp_path, speeches, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        make_dm(tmp_path, speeches, **kwargs).vocab_size


def test_a_trained_bpe_serves_masked_paragraphs(tmp_path, speeches):
    bpe = tokenizer_config("bpe", vocab_size=300)
    dm = make_dm(tmp_path, speeches, mode="paragraphs", objective="masked", tokenizer=bpe)
    assert dm.vocab_size == 300 and {PAD, MASK} <= set(dm.tokenizer.special_tokens)


def test_predict_serves_every_sample_of_every_prompt(tmp_path):
    (tmp_path / "p.txt").write_text("a\nb\n")
    dm = GPTDataModule(prompts_file=str(tmp_path / "p.txt"), num_samples=2, batch_size=3)
    batches = list(dm.predict_dataloader())
    assert [[(i["index"], i["sample"]) for i in b] for b in batches] == [[(0, 0), (0, 1), (1, 0)], [(1, 1)]]
    assert GPTDataModule(prompt="x\\ny").prompts() == ["x\ny"] and GPTDataModule().prompts() == [None]


def test_a_corpus_of_documents_trains_on_windows_only(tmp_path):
    (tmp_path / "docs.jsonl").write_text('{"text": "one"}\n')
    with pytest.raises(ValueError, match="data.mode paragraphs needs a text corpus"):
        GPTDataModule(corpus=str(tmp_path / "docs.jsonl"), mode="paragraphs")


def test_a_corpus_of_documents_smaller_than_a_shard_holds_out_a_share_by_itself(tmp_path, caplog):
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": f"Speech {i}: speak, speak.\n"} for i in range(300)])
    dm = make_dm(tmp_path, docs, tokenize_workers=1)
    with caplog.at_level("INFO", logger="gpt"):
        ready(dm)
    (train,), (val,) = dm.train_ids, dm.val_ids
    n = len(train) + len(val)
    assert len(val) == int(n * 0.1) and len(train) == n - len(val)
    assert f"The corpus has {n:,} tokens, less than one shard: holding out its first {len(val):,} (10%" in caplog.text
    assert len(dm.train_dataloader()) > 0 and len(dm.val_dataloader()) > 0
    # A count given is a count kept: the first 500 ids, and the rest trains.
    dm = ready(make_dm(tmp_path, docs, tokenize_workers=1, val_tokens=500, shard_tokens=1000))
    assert sum(map(len, dm.val_ids)) == 500 and sum(map(len, dm.train_ids)) == n - 500
