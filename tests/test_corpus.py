"""gpt/data/corpus.py: finding and downloading corpora, reading them in blocks, their tokenizers
and the token cache."""

import hashlib
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpt.data.corpus as corpus_module
import gpt.data.download as download_module
from gpt.data.corpus import Corpus, read_blocks, safe_cut
from gpt.tokenizers import ENDOFTEXT, BPETokenizer, TiktokenTokenizer
from gpt.tokenizers.bpe import SPLIT_PATTERNS
from gpt.tokenizers.settings import tokenizer_config

BPE_300 = tokenizer_config("bpe", vocab_size=300)


def make_corpus(tmp_path, path) -> Corpus:
    return Corpus(str(path), data_dir=tmp_path / "data")


def cached_ids(corpus: Corpus, tokenizer) -> np.ndarray:
    return np.fromfile(corpus.encode(tokenizer), dtype=corpus.ids(tokenizer).dtype)


# ---- files and downloads


def test_missing_corpus_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus file .*nope.txt' does not exist"):
        make_corpus(tmp_path, tmp_path / "nope.txt").path


def test_folder_without_text_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="corpus folder .*empty' has no .txt files"):
        make_corpus(tmp_path, tmp_path / "empty").files()


def test_a_folder_of_code_says_what_it_has_and_how_to_take_it(tmp_path):
    (tmp_path / "src").mkdir()
    for name in ("a.py", "b.py", "README.md"):
        (tmp_path / "src" / name).write_text("x = 1\n")
    with pytest.raises(FileNotFoundError, match=r"has no .txt files \(it has 2 .py, 1 .md\); choose its files with"):
        make_corpus(tmp_path, tmp_path / "src").files()


@pytest.fixture
def code_folder(tmp_path):
    """A small source tree: tabs, Windows line ends, non-ASCII, a hidden folder and a binary."""
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / ".git").mkdir()
    (src / "pkg" / "b.py").write_bytes(b"def f():\r\n\treturn 'caf\xc3\xa9'\r\n")
    (src / "a.py").write_text("import os\n\n\nclass A:\n\tpass\n", encoding="utf-8")
    (src / "notes.md").write_text("# Notes\n")
    (src / ".git" / "c.py").write_text("hidden = True\n")
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return src


@pytest.mark.parametrize("how", ["glob", "extensions"])
def test_a_folder_of_code_trains_with_every_character_kept(tmp_path, code_folder, how):
    if how == "glob":
        corpus = Corpus(str(code_folder / "**" / "*.py"), data_dir=tmp_path / "data")
    else:
        corpus = Corpus(str(code_folder), data_dir=tmp_path / "data", extensions=(".py", ".md"))
    names = [p.relative_to(code_folder).as_posix() for p in corpus.files()]
    assert names == (["a.py", "pkg/b.py"] if how == "glob" else ["a.py", "notes.md", "pkg/b.py"])
    tok = corpus.tokenizer(tokenizer_config())
    assert {"\t", "\r", "é"} <= set(tok.decode(list(range(tok.vocab_size - 1))))
    text = tok.decode(cached_ids(corpus, tok).tolist())
    docs = [(code_folder / n).read_bytes().decode("utf-8") for n in names]
    assert text == ENDOFTEXT.join(docs)  # byte for byte: tabs, \r\n, é
    assert corpus.name == "src"


def test_a_glob_that_matches_nothing_is_one_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus glob .*\*\*/\*.rs' matches no files"):
        Corpus(str(tmp_path / "**" / "*.rs"), data_dir=tmp_path / "data").files()


def test_corpus_that_is_not_utf8(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt' is not UTF-8 text"):
        list(make_corpus(tmp_path, tmp_path / "latin1.txt").blocks())


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_size_and_md5(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module.urllib.request, "urlopen", lambda url, timeout: _Response(b"not shakespeare"))
    target = tmp_path / "tinyshakespeare" / "input.txt"
    with pytest.raises(ValueError, match="expected 1115394 bytes with md5 6fb458f1232090904fb40fe944165e91"):
        download_module.download_shakespeare(target)
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []  # no partial file left


def test_download_writes_verified_file(tmp_path, monkeypatch, shakespeare):
    data = shakespeare.read_bytes()
    monkeypatch.setattr(download_module.urllib.request, "urlopen", lambda url, timeout: _Response(data))
    path = Corpus(data_dir=tmp_path).path  # "shakespeare", not yet under data_dir
    assert path == tmp_path / "tinyshakespeare" / "input.txt"
    assert hashlib.md5(path.read_bytes()).hexdigest() == download_module.SHAKESPEARE_MD5
    assert [p.name for p in path.parent.iterdir()] == ["input.txt"]  # no temporary file left beside it


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(download_module.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="could not download Tiny Shakespeare.*--data.corpus PATH"):
        Corpus(data_dir=tmp_path).path


# ---- reading in blocks


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


def test_corpus_is_encoded_in_batches_of_blocks(tmp_path, shakespeare, monkeypatch):
    monkeypatch.setattr(corpus_module, "BLOCK_CHARS", 20_000)
    monkeypatch.setattr(corpus_module, "BATCH_BLOCKS", 4)
    corpus = make_corpus(tmp_path, shakespeare)
    tok = corpus.tokenizer(tokenizer_config())
    batches = []
    encode_batch = tok.encode_batch
    monkeypatch.setattr(tok, "encode_batch", lambda texts: batches.append(len(texts)) or encode_batch(texts))
    ids = np.fromfile(corpus.encode(tok), dtype=np.uint16)
    assert len(batches) > 10 and max(batches) == 4  # never more than one batch of text at a time
    assert tok.decode(ids.tolist()) == shakespeare.read_text(encoding="utf-8")


# ---- the token cache


def test_ids_are_cached_and_reused(tmp_path, small_corpus, monkeypatch):
    corpus = make_corpus(tmp_path, small_corpus)
    tok = corpus.tokenizer(tokenizer_config())
    path = corpus.encode(tok)
    assert path.is_file() and path.stat().st_size == 2 * len(small_corpus.read_text())
    assert tok.decode(cached_ids(corpus, tok).tolist()) == small_corpus.read_text()

    def fail(*args):
        raise AssertionError("the corpus was encoded again")

    again = make_corpus(tmp_path, small_corpus)
    monkeypatch.setattr(type(tok), "encode", fail)
    monkeypatch.setattr(type(tok), "encode_batch", fail)
    assert again.encode(again.tokenizer(tokenizer_config())) == path


def test_cache_key_follows_corpus_content(tmp_path, small_corpus):
    corpus = make_corpus(tmp_path, small_corpus)
    before = corpus.ids_path(corpus.tokenizer(tokenizer_config()))
    small_corpus.write_text(small_corpus.read_text() + "More text.\n")
    after = make_corpus(tmp_path, small_corpus)
    assert after.ids_path(after.tokenizer(tokenizer_config())) != before


def test_ids_are_uint32_when_the_vocabulary_needs_it(tmp_path, small_corpus):
    corpus = make_corpus(tmp_path, small_corpus)
    tok = corpus.tokenizer(tokenizer_config("tiktoken", encoding="cl100k_base"))
    assert corpus.ids_path(tok).suffix == ".uint32"
    assert cached_ids(corpus, tok).tolist() == tok.encode(small_corpus.read_text())
    assert corpus.ids(tok).dtype == np.uint32


def test_char_ids_are_uint16(tmp_path, small_corpus):
    corpus = make_corpus(tmp_path, small_corpus)
    tok = corpus.tokenizer(tokenizer_config())
    assert corpus.ids_path(tok).suffix == ".uint16" and corpus.ids(tok).dtype == np.uint16


def test_cache_key_follows_the_tokenizer(tmp_path, small_corpus):
    corpus = make_corpus(tmp_path, small_corpus)
    configs = [
        tokenizer_config(),
        tokenizer_config("tiktoken"),
        tokenizer_config("tiktoken", encoding="cl100k_base"),
        BPE_300,
        tokenizer_config("bpe", vocab_size=310),
        tokenizer_config("bpe", vocab_size=300, pattern="gpt2"),
    ]
    assert len({corpus.ids_path(corpus.tokenizer(config)) for config in configs}) == 6


def test_changed_corpus_is_encoded_again_never_read_stale(tmp_path, small_corpus):
    for config in (tokenizer_config(), BPE_300):
        before = make_corpus(tmp_path, small_corpus)
        before_tok = before.tokenizer(config)
        before_ids = cached_ids(before, before_tok)
        small_corpus.write_text(small_corpus.read_text() + "\nMENENIUS:\nWhat work's, my countrymen?\n")
        after = make_corpus(tmp_path, small_corpus)
        tok = after.tokenizer(config)
        assert after.ids_path(tok) != before.ids_path(before_tok)
        ids = cached_ids(after, tok)
        assert len(ids) > len(before_ids)
        assert tok.decode(ids.tolist()) == small_corpus.read_text()


def test_tiny_shakespeare_has_the_ids_of_nanogpt(tmp_path, shakespeare, monkeypatch):
    monkeypatch.setattr(corpus_module, "BLOCK_CHARS", 50_000)  # many batches of blocks
    corpus = make_corpus(tmp_path, shakespeare)
    chars = corpus.tokenizer(tokenizer_config())
    assert chars.vocab_size == 65 and len(corpus.ids(chars)) == 1_115_394
    gpt2 = corpus.tokenizer(tokenizer_config("tiktoken"))
    ids = corpus.ids(gpt2)
    # nanoGPT's data/shakespeare/prepare.py: 301,966 train + 36,059 val tokens
    assert len(ids) == 338_025 and corpus.ids_path(gpt2).suffix == ".uint16"
    assert gpt2.decode(ids[:5].tolist()) == "First Citizen:\nBefore"


# ---- the tokenizer of a corpus


def test_bpe_is_trained_on_the_training_split_saved_and_reused(tmp_path, small_corpus, monkeypatch):
    text = small_corpus.read_text()
    corpus = make_corpus(tmp_path, small_corpus)
    tok = corpus.tokenizer(BPE_300, val_fraction=0.1)
    assert tok.vocab_size == 300 and corpus.bpe_path(BPE_300, 0.1).is_file()
    expected = BPETokenizer.train([text[: int(len(text.encode()) * 0.9)]], vocab_size=300)  # ASCII: bytes = chars
    assert tok.merges == expected.merges

    def fail(*args, **kwargs):
        raise AssertionError("the BPE was trained again")

    monkeypatch.setattr(corpus_module.BPETokenizer, "train", fail)
    again = make_corpus(tmp_path, small_corpus).tokenizer(BPE_300, val_fraction=0.1)
    assert again.merges == tok.merges
    # A saved BPE can also be named directly: the same tokenizer, so the same cache.
    named = corpus.tokenizer(tokenizer_config("bpe", path=str(corpus.bpe_path(BPE_300, 0.1))))
    assert named.merges == tok.merges and corpus.ids_path(named) == corpus.ids_path(again)


def test_bpe_uses_the_pattern_it_names(tmp_path, small_corpus):
    tok = make_corpus(tmp_path, small_corpus).tokenizer(tokenizer_config("bpe", vocab_size=300, pattern="gpt2"))
    assert tok.pattern == SPLIT_PATTERNS["gpt2"]


def test_char_tokenizer_gains_the_special_tokens_asked_for(tmp_path, small_corpus):
    corpus = make_corpus(tmp_path, small_corpus)
    n_chars = len(set(small_corpus.read_text()))
    tok = corpus.tokenizer(tokenizer_config(), special=("<|pad|>", "<|mask|>"))
    assert tok.special_tokens == {"<|pad|>": n_chars, "<|mask|>": n_chars + 1}


def test_empty_corpus_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty.txt' is empty"):
        make_corpus(tmp_path, tmp_path / "empty.txt").tokenizer(tokenizer_config())


@pytest.fixture
def folder_corpus(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("Second document.\n")
    (folder / "a.txt").write_text(f"First document, which mentions {ENDOFTEXT} as text.\n")
    (folder / "sub" / "c.txt").write_text("Third, in a subfolder.\n")
    (folder / "notes.md").write_text("not a .txt file: ignored\n")
    return folder


@pytest.mark.parametrize("config", [tokenizer_config(), tokenizer_config("tiktoken")], ids=["char", "gpt2"])
def test_folder_documents_are_joined_with_endoftext(tmp_path, folder_corpus, config):
    corpus = make_corpus(tmp_path, folder_corpus)
    tok = corpus.tokenizer(config)
    assert tok.eot_id is not None
    docs = [(folder_corpus / name).read_text() for name in ("a.txt", "b.txt", "sub/c.txt")]
    expected = tok.encode(docs[0]) + [tok.eot_id] + tok.encode(docs[1]) + [tok.eot_id] + tok.encode(docs[2])
    ids = cached_ids(corpus, tok).tolist()
    assert ids == expected
    assert ids.count(tok.eot_id) == 2  # the "<|endoftext|>" typed in a.txt stays text
    # Adding a document changes the cache key.
    (folder_corpus / "d.txt").write_text("Fourth.\n")
    assert make_corpus(tmp_path, folder_corpus).ids_path(tok) != corpus.ids_path(tok)


# ---- a damaged cache is found out and rebuilt


@pytest.mark.parametrize("damage", ["cut short", "zeroed", "random bytes", "another corpus's", "no manifest"])
def test_a_damaged_token_cache_is_encoded_again_with_a_warning(tmp_path, small_corpus, damage, caplog):
    corpus = make_corpus(tmp_path, small_corpus)
    tok = corpus.tokenizer(tokenizer_config())
    path = corpus.encode(tok)
    good = path.read_bytes()
    if damage == "cut short":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "zeroed":
        path.write_bytes(bytes(len(good)))  # same size: only the checksum tells
    elif damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(good), dtype=np.uint8).tobytes())
    elif damage == "another corpus's":
        other = tmp_path / "other.txt"
        other.write_text(small_corpus.read_text()[::-1])
        other_corpus = make_corpus(tmp_path, other)
        path.write_bytes(other_corpus.encode(other_corpus.tokenizer(tokenizer_config())).read_bytes())
    else:
        corpus_module.manifest_path(path).unlink()
    again = make_corpus(tmp_path, small_corpus)  # a new run opens the cache
    with caplog.at_level("WARNING", logger="gpt.data.corpus"):
        ids = again.ids(again.tokenizer(tokenizer_config()))
    assert "warning: the token cache" in caplog.text and "encoding the corpus again" in caplog.text
    assert tok.decode(ids.tolist()) == small_corpus.read_text() and path.read_bytes() == good


def test_a_sound_cache_is_read_without_a_word(tmp_path, small_corpus, caplog):
    corpus = make_corpus(tmp_path, small_corpus)
    corpus.encode(corpus.tokenizer(tokenizer_config()))
    manifest = json.loads(
        corpus_module.manifest_path(corpus.ids_path(corpus.tokenizer(tokenizer_config()))).read_text()
    )
    assert manifest["tokens"] == len(small_corpus.read_text()) and manifest["dtype"] == "uint16"
    caplog.clear()  # the first encoding's INFO line, captured when an earlier test turned gpt's messages on
    with caplog.at_level("WARNING", logger="gpt.data.corpus"):
        again = make_corpus(tmp_path, small_corpus)
        again.ids(again.tokenizer(tokenizer_config()))
    assert caplog.text == ""


def test_a_damaged_trained_bpe_is_trained_again(tmp_path, small_corpus, caplog):
    corpus = make_corpus(tmp_path, small_corpus)
    trained = corpus.tokenizer(BPE_300)
    path = corpus.bpe_path(BPE_300, 0.1)
    path.write_text(path.read_text()[:100])  # cut short
    with caplog.at_level("WARNING", logger="gpt.data.corpus"):
        again = make_corpus(tmp_path, small_corpus).tokenizer(BPE_300)
    assert "training the BPE again" in caplog.text and again.merges == trained.merges
    named = tokenizer_config("bpe", path=str(tmp_path / "nope.json"))
    with pytest.raises(FileNotFoundError, match="BPE tokenizer file .*nope.json' does not exist"):
        corpus.tokenizer(named)  # a file the user names is never replaced


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_any_corpus_bytes_are_read_whole_or_refused_by_name(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("bytes")
    (folder / "c.txt").write_bytes(data)
    corpus = Corpus(str(folder / "c.txt"), data_dir=folder / "data")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(ValueError, match="c.txt' is not UTF-8 text"):
            list(corpus.blocks())
        return
    assert "".join(corpus.blocks()) == text  # every character as written, \r included


def test_a_corpus_of_documents_takes_a_published_or_saved_tokenizer_not_a_new_bpe(tmp_path):
    from gpt.tokenizers.settings import BPESettings

    (tmp_path / "docs.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    corpus = Corpus(str(tmp_path / "docs.jsonl"), tmp_path / "data")
    with pytest.raises(ValueError, match="a BPE is trained on a text corpus; for the documents of 'docs'"):
        corpus.tokenizer(BPESettings(vocab_size=300))
    chars = corpus.tokenizer(tokenizer_config("char"))
    assert chars.eot_id is not None and chars.encode("onetw") == chars.encode("one") + chars.encode("tw")
