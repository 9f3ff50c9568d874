import hashlib
import io

import numpy as np
import pytest
import torch

import gpt.datamodule as datamodule
from gpt.datamodule import IGNORE_INDEX, EvalWindows, GPTDataModule, TrainWindows, unescape


def test_train_windows_every_offset():
    ids = np.arange(20, dtype=np.uint16)
    ds = TrainWindows(ids, block_size=4, stride=1)
    # offsets 0..15: the last window needs ids[15:20]
    assert len(ds) == 16
    x, y = ds[15]
    assert x.tolist() == [15, 16, 17, 18]
    assert y.tolist() == [16, 17, 18, 19]
    assert x.dtype == torch.int64


def test_train_windows_with_stride():
    ids = np.arange(20, dtype=np.uint16)
    ds = TrainWindows(ids, block_size=4, stride=4)
    assert len(ds) == 4  # offsets 0, 4, 8, 12; 16 would need ids[16:21]
    assert [ds[i][0][0].item() for i in range(len(ds))] == [0, 4, 8, 12]
    assert len(TrainWindows(np.arange(21, dtype=np.uint16), block_size=4, stride=4)) == 5


@pytest.mark.parametrize("n", [9, 10, 11, 17, 100])
def test_eval_windows_score_every_target_exactly_once(n):
    ids = np.arange(n, dtype=np.uint16)
    ds = EvalWindows(ids, block_size=4)
    scored = []
    for i in range(len(ds)):
        x, y = ds[i]
        assert len(x) == len(y) == 4
        assert torch.equal(x[y != IGNORE_INDEX] + 1, y[y != IGNORE_INDEX])  # y is x shifted by one
        scored += y[y != IGNORE_INDEX].tolist()
    assert sorted(scored) == list(range(1, n))  # every target id 1..n-1, once


def make_dm(tmp_path, corpus, **kwargs):
    kwargs.setdefault("block_size", 32)
    kwargs.setdefault("batch_size", 4)
    return GPTDataModule(corpus=str(corpus), data_dir=str(tmp_path / "data"), **kwargs)


def test_split_is_first_90_last_10(tmp_path, small_corpus):
    text = small_corpus.read_text()
    dm = make_dm(tmp_path, small_corpus)
    dm.prepare_data()
    dm.setup("fit")
    n_train = int(len(text) * 0.9)
    assert len(dm.train_ids) == n_train
    assert len(dm.val_ids) == len(text) - n_train
    assert dm.tokenizer.decode(dm.val_ids.tolist()) == text[n_train:]
    assert dm.val_chars_per_token == 1.0


def test_batches_are_shifted_windows(tmp_path, small_corpus):
    dm = make_dm(tmp_path, small_corpus)
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 32)
    assert torch.equal(x[:, 1:], y[:, :-1])
    text = small_corpus.read_text()
    assert dm.tokenizer.decode(x[0].tolist()) in text


def test_shuffle_is_seeded(tmp_path, small_corpus):
    def first_batch(seed):
        dm = make_dm(tmp_path, small_corpus, seed=seed)
        dm.prepare_data()
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))[0]

    assert torch.equal(first_batch(1), first_batch(1))
    assert not torch.equal(first_batch(1), first_batch(2))


def test_ids_are_cached_and_reused(tmp_path, small_corpus, monkeypatch):
    dm = make_dm(tmp_path, small_corpus)
    path = dm.encode_corpus()
    assert path.is_file() and path.stat().st_size == 2 * len(small_corpus.read_text())

    def fail(*args):
        raise AssertionError("the corpus was encoded again")

    dm2 = make_dm(tmp_path, small_corpus)
    monkeypatch.setattr(type(dm2.tokenizer), "encode", fail)
    assert dm2.encode_corpus() == path


def test_cache_key_follows_corpus_content(tmp_path, small_corpus):
    before = make_dm(tmp_path, small_corpus).ids_path()
    small_corpus.write_text(small_corpus.read_text() + "More text.\n")
    assert make_dm(tmp_path, small_corpus).ids_path() != before


def test_validation_covers_whole_split(tmp_path, small_corpus):
    dm = make_dm(tmp_path, small_corpus, batch_size=7)
    dm.prepare_data()
    dm.setup("fit")
    scored = sum(int((y != IGNORE_INDEX).sum()) for _, y in dm.val_dataloader())
    assert scored == len(dm.val_ids) - 1


def test_missing_corpus_file(tmp_path):
    dm = GPTDataModule(corpus=str(tmp_path / "nope.txt"), data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"corpus file .*nope.txt' does not exist"):
        dm.prepare_data()


def test_corpus_shorter_than_a_window(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("to be or not to be " * 10)  # 190 characters: 19 for validation
    dm = GPTDataModule(corpus=str(corpus), data_dir=str(tmp_path), block_size=32)
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"validation split has 19: fewer than block_size \+ 1 = 33"):
        dm.setup("fit")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        GPTDataModule(stride=0)
    with pytest.raises(ValueError, match="prompt is empty"):
        GPTDataModule(prompt="")
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\), got 1.5"):
        GPTDataModule(val_fraction=1.5)


def test_unescape_prompt():
    assert unescape("ROMEO:\\nO") == "ROMEO:\nO"
    assert unescape("naïve\\tx") == "naïve\tx"
    assert unescape("plain") == "plain"


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_size_and_md5(tmp_path, monkeypatch):
    monkeypatch.setattr(datamodule.urllib.request, "urlopen", lambda url, timeout: _Response(b"not shakespeare"))
    target = tmp_path / "tinyshakespeare" / "input.txt"
    with pytest.raises(ValueError, match="expected 1115394 bytes with md5 6fb458f1232090904fb40fe944165e91"):
        datamodule.download_shakespeare(target)
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []  # no partial file left


def test_download_writes_verified_file(tmp_path, monkeypatch, shakespeare):
    data = shakespeare.read_bytes()
    monkeypatch.setattr(datamodule.urllib.request, "urlopen", lambda url, timeout: _Response(data))
    dm = GPTDataModule(data_dir=str(tmp_path))  # corpus "shakespeare", not yet under data_dir
    path = dm.corpus_path()
    assert path == tmp_path / "tinyshakespeare" / "input.txt"
    assert hashlib.md5(path.read_bytes()).hexdigest() == datamodule.SHAKESPEARE_MD5


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datamodule.urllib.request, "urlopen", offline)
    dm = GPTDataModule(data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="could not download Tiny Shakespeare.*--data.corpus PATH"):
        dm.prepare_data()


def test_tiny_shakespeare_split_matches_nanogpt(tmp_path, shakespeare):
    dm = GPTDataModule(corpus=str(shakespeare), data_dir=str(tmp_path), block_size=256)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.vocab_size == 65
    # nanoGPT's shakespeare_char/prepare.py: "train has 1,003,854 tokens, val has 111,540 tokens"
    assert (len(dm.train_ids), len(dm.val_ids)) == (1_003_854, 111_540)
    assert dm.ids_path().suffix == ".uint16"


# ---------------------------------------------------------------- tokenizers and corpora

from gpt.datamodule import read_blocks, safe_cut  # noqa: E402
from gpt.tokenizers import ENDOFTEXT, BPETokenizer, TiktokenTokenizer, TokenizerConfig  # noqa: E402

BPE_300 = TokenizerConfig(kind="bpe", vocab_size=300)


def cached_ids(dm) -> np.ndarray:
    return np.fromfile(dm.encode_corpus(), dtype=np.uint16 if dm.ids_path().suffix == ".uint16" else np.uint32)


def test_safe_cut_is_after_a_line_that_a_letter_follows():
    assert safe_cut("speak.\nFirst") == len("speak.\n")
    assert safe_cut("a\n\nFirst") == -1  # a blank line: GPT-2 keeps "\n\n" at the end of a text together
    assert safe_cut("x\n 1\n\n") == -1
    assert safe_cut("One:\nTwo,\nthree") == len("One:\nTwo,\n")


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "bpe"])
def test_encoding_in_blocks_equals_encoding_the_whole_text(name, shakespeare):
    text = shakespeare.read_text(encoding="utf-8")
    if name == "bpe":
        tok = BPETokenizer.train([text[:300_000]], vocab_size=1000)
    else:
        tok = TiktokenTokenizer(name)
    blocks = list(read_blocks(shakespeare, block_chars=5000))
    assert len(blocks) > 200 and "".join(blocks) == text
    ids = [i for block_ids in tok.encode_batch(blocks) for i in block_ids]
    assert ids == tok.encode(text)


def test_gpt2_on_tiny_shakespeare_matches_nanogpt(tmp_path, shakespeare, monkeypatch):
    monkeypatch.setattr(datamodule, "BLOCK_CHARS", 50_000)  # many batches of blocks
    dm = GPTDataModule(corpus=str(shakespeare), data_dir=str(tmp_path), tokenizer=TokenizerConfig(kind="tiktoken"))
    dm.setup("fit")
    # nanoGPT's data/shakespeare/prepare.py: 301,966 train + 36,059 val tokens
    assert len(dm.train_ids) + len(dm.val_ids) == 338_025
    assert dm.vocab_size == 50257 and dm.ids_path().suffix == ".uint16"
    assert dm.tokenizer.decode(dm.train_ids[:5].tolist()) == "First Citizen:\nBefore"
    assert dm.val_chars_per_token == pytest.approx(3.083, abs=1e-3)  # characters per scored val token


def test_ids_are_uint32_when_the_vocabulary_needs_it(tmp_path, small_corpus):
    dm = make_dm(tmp_path, small_corpus, tokenizer=TokenizerConfig(kind="tiktoken", encoding="cl100k_base"))
    assert dm.ids_path().suffix == ".uint32"
    ids = cached_ids(dm)
    assert ids.tolist() == dm.tokenizer.encode(small_corpus.read_text())
    assert dm.load_ids().dtype == np.uint32


def test_char_ids_are_uint16(tmp_path, small_corpus):
    dm = make_dm(tmp_path, small_corpus)
    assert dm.ids_path().suffix == ".uint16"
    assert dm.load_ids().dtype == np.uint16
    assert dm.tokenizer.decode(cached_ids(dm).tolist()) == small_corpus.read_text()


def test_cache_key_follows_the_tokenizer(tmp_path, small_corpus):
    paths = {
        make_dm(tmp_path, small_corpus, tokenizer=config).ids_path()
        for config in [
            TokenizerConfig(),
            TokenizerConfig(kind="tiktoken"),
            TokenizerConfig(kind="tiktoken", encoding="cl100k_base"),
            BPE_300,
            TokenizerConfig(kind="bpe", vocab_size=310),
            TokenizerConfig(kind="bpe", vocab_size=300, pattern="gpt2"),
        ]
    }
    assert len(paths) == 6


def test_changed_corpus_is_encoded_again_never_read_stale(tmp_path, small_corpus):
    for config in (TokenizerConfig(), BPE_300):
        before = make_dm(tmp_path, small_corpus, tokenizer=config)
        before_ids = cached_ids(before)
        small_corpus.write_text(small_corpus.read_text() + "\nMENENIUS:\nWhat work's, my countrymen?\n")
        after = make_dm(tmp_path, small_corpus, tokenizer=config)
        assert after.ids_path() != before.ids_path()
        ids = cached_ids(after)
        assert len(ids) > len(before_ids)
        assert after.tokenizer.decode(ids.tolist()) == small_corpus.read_text()


def test_bpe_is_trained_on_the_training_split_saved_and_reused(tmp_path, small_corpus, monkeypatch):
    text = small_corpus.read_text()
    dm = make_dm(tmp_path, small_corpus, tokenizer=BPE_300)
    tok = dm.tokenizer
    assert tok.vocab_size == 300 and dm.bpe_path().is_file()
    expected = BPETokenizer.train([text[: int(len(text.encode()) * 0.9)]], vocab_size=300)  # ASCII: bytes = chars
    assert tok.merges == expected.merges

    def fail(*args, **kwargs):
        raise AssertionError("the BPE was trained again")

    monkeypatch.setattr(datamodule.BPETokenizer, "train", fail)
    again = make_dm(tmp_path, small_corpus, tokenizer=BPE_300)
    assert again.tokenizer.merges == tok.merges
    # A saved BPE can also be named directly.
    named = make_dm(tmp_path, small_corpus, tokenizer=TokenizerConfig(kind="bpe", path=str(dm.bpe_path())))
    assert named.tokenizer.merges == tok.merges
    assert named.ids_path() == again.ids_path()  # same tokenizer identity: same cache


@pytest.fixture
def folder_corpus(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("Second document.\n")
    (folder / "a.txt").write_text(f"First document, which mentions {ENDOFTEXT} as text.\n")
    (folder / "sub" / "c.txt").write_text("Third, in a subfolder.\n")
    (folder / "notes.md").write_text("not a .txt file: ignored\n")
    return folder


@pytest.mark.parametrize("config", [TokenizerConfig(), TokenizerConfig(kind="tiktoken")], ids=["char", "gpt2"])
def test_folder_documents_are_joined_with_endoftext(tmp_path, folder_corpus, config):
    dm = GPTDataModule(corpus=str(folder_corpus), data_dir=str(tmp_path / "data"), tokenizer=config)
    tok = dm.tokenizer
    assert tok.eot_id is not None
    docs = [(folder_corpus / name).read_text() for name in ("a.txt", "b.txt", "sub/c.txt")]
    expected = tok.encode(docs[0]) + [tok.eot_id] + tok.encode(docs[1]) + [tok.eot_id] + tok.encode(docs[2])
    ids = cached_ids(dm).tolist()
    assert ids == expected
    assert ids.count(tok.eot_id) == 2  # the "<|endoftext|>" typed in a.txt stays text
    # Adding a document changes the cache key.
    (folder_corpus / "d.txt").write_text("Fourth.\n")
    assert GPTDataModule(corpus=str(folder_corpus), data_dir=str(tmp_path / "data"), tokenizer=config).ids_path() != dm.ids_path()


def test_folder_without_text_files(tmp_path):
    (tmp_path / "empty").mkdir()
    dm = GPTDataModule(corpus=str(tmp_path / "empty"), data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="corpus folder .*empty' has no .txt files"):
        dm.prepare_data()


def test_corpus_that_is_not_utf8(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    dm = GPTDataModule(corpus=str(tmp_path / "latin1.txt"), data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="latin1.txt' is not UTF-8 text"):
        dm.prepare_data()


def test_corpus_is_encoded_in_batches_of_blocks(tmp_path, shakespeare, monkeypatch):
    monkeypatch.setattr(datamodule, "BLOCK_CHARS", 20_000)
    monkeypatch.setattr(datamodule, "BATCH_BLOCKS", 4)
    dm = GPTDataModule(corpus=str(shakespeare), data_dir=str(tmp_path))
    tok = dm.tokenizer
    batches = []
    encode_batch = tok.encode_batch
    monkeypatch.setattr(tok, "encode_batch", lambda texts: batches.append(len(texts)) or encode_batch(texts))
    ids = np.fromfile(dm.encode_corpus(), dtype=np.uint16)
    assert len(batches) > 10 and max(batches) == 4  # never more than one batch of text at a time
    assert tok.decode(ids.tolist()) == shakespeare.read_text(encoding="utf-8")
