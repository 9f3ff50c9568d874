import warnings

import pytest
import regex
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.tokenizers import (
    ENDOFTEXT,
    MASK,
    PAD,
    SPLIT_PATTERNS,
    BPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    TokenizerConfig,
    bpe_encode_reference,
    merge,
    tokenizer_from_state,
    train_bpe,
)

# ---------------------------------------------------------------- characters


def test_char_vocabulary_is_sorted_distinct_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == " dehlorw"
    assert tok.vocab_size == 8
    assert tok.encode("hello") == [3, 2, 4, 4, 5]


def test_char_round_trip():
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text


def test_unknown_character_names_character_and_position():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"character 'z' at position 2 is not in the tokenizer's vocabulary of 3"):
        tok.encode("abzc")


def test_state_dict_round_trip():
    tok = CharTokenizer.from_text("the quick brown fox", special_tokens=[ENDOFTEXT])
    restored = tokenizer_from_state(tok.state_dict())
    assert restored.chars == tok.chars
    assert restored.special_tokens == {ENDOFTEXT: 16}
    assert restored.encode("quick fox") == tok.encode("quick fox")


def test_unknown_state_kind_is_refused():
    with pytest.raises(ValueError, match="unknown tokenizer kind 'nope'"):
        tokenizer_from_state({"kind": "nope"})


def test_tiny_shakespeare_has_65_characters(shakespeare):
    text = shakespeare.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    assert tok.special_tokens == {}
    assert tok.decode(tok.encode(text[:5000])) == text[:5000]


# ---------------------------------------------------------------- tiktoken


def test_gpt2_every_effort_moves_you():
    tok = TiktokenTokenizer("gpt2")
    assert tok.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    assert tok.vocab_size == 50257
    assert tok.special_tokens == {ENDOFTEXT: 50256}
    assert tok.decode([6109, 3626, 6100, 345]) == "Every effort moves you"
    assert tokenizer_from_state(tok.state_dict()).encode("Every effort") == [6109, 3626]


def test_cl100k_base():
    tok = TiktokenTokenizer("cl100k_base")
    assert tok.encode("hello world") == [15339, 1917]
    assert tok.vocab_size == 100277
    assert tok.eot_id == 100257


def test_unknown_encoding_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown tiktoken encoding 'gpt5'; known encodings: gpt2, r50k_base, .*cl100k_base"):
        TiktokenTokenizer("gpt5")
    with pytest.raises(ValueError, match=r"unknown tiktoken encoding 'gpt5'; known encodings: gpt2"):
        TokenizerConfig(kind="tiktoken", encoding="gpt5")


def test_encoding_that_cannot_be_loaded_offline_names_the_cache_dir(tmp_path, monkeypatch):
    requests = pytest.importorskip("requests")

    def offline(url, *args, **kwargs):
        raise requests.ConnectionError(f"Failed to resolve host of {url}")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setattr(requests, "get", offline)
    with pytest.raises(ValueError, match=rf"could not load tiktoken encoding 'o200k_base' \(ConnectionError.*TIKTOKEN_CACHE_DIR \(now: {tmp_path}\)"):
        TiktokenTokenizer("o200k_base")


# ---------------------------------------------------------------- our BPE


def test_merge_replaces_pairs_left_to_right():
    assert merge([1, 2, 1, 2, 2], (1, 2), 9) == [9, 9, 2]
    assert merge([5, 5, 5], (5, 5), 7) == [7, 5]  # overlapping: the left pair wins
    assert merge([1], (1, 2), 9) == [1]


def test_bpe_learns_the_most_frequent_pairs_first():
    # Pieces "aaab", " aaab", " aaab": (a, a) occurs 6 times, (a, b) 3, (" ", a) 2.
    merges = train_bpe(["aaab aaab aaab"], num_merges=3, pattern=SPLIT_PATTERNS["gpt2"])
    a, b = ord("a"), ord("b")
    # Then "aa a b": (aa, a) and (a, b) tie at 3 and the smaller pair wins; then (aa, ab).
    assert merges == [(a, a), (a, b), (256, 257)]


def test_bpe_vocabulary_layout():
    tok = BPETokenizer.train(["the cat sat on the mat " * 50], vocab_size=270)
    assert tok.vocab_size == 270
    assert len(tok.merges) == 270 - 256 - 3
    assert tok.special_tokens == {ENDOFTEXT: 267, PAD: 268, MASK: 269}
    assert tok.token_bytes(97) == b"a"  # ids 0-255 are the bytes
    assert tok.token_bytes(256) == tok.token_bytes(tok.merges[0][0]) + tok.token_bytes(tok.merges[0][1])


def test_bpe_vocab_size_below_bytes_and_specials_is_refused():
    with pytest.raises(ValueError, match=r"BPE vocab_size 258 is too small: it needs at least 256 byte tokens \+ 3 special tokens = 259"):
        BPETokenizer.train(["some text"], vocab_size=258)
    with pytest.raises(ValueError, match="BPE vocab_size 100 is too small"):
        TokenizerConfig(kind="bpe", vocab_size=100)


def test_bpe_training_is_deterministic(shakespeare):
    text = shakespeare.read_text(encoding="utf-8")[:200_000]
    a = BPETokenizer.train([text], vocab_size=600)
    b = BPETokenizer.train([text[:100_000], text[100_000:]], vocab_size=600)  # same text, other blocks
    assert a.merges == b.merges
    assert a.state_dict() == b.state_dict()


def test_bpe_merges_never_cross_a_pre_split_boundary():
    # Without the pre-split, "g." and ". " would be the most frequent pairs of all.
    # Pieces: "dog", ".", " dog", ".", ...: three merges are possible, and no more.
    tok = BPETokenizer.train(["dog. " * 500], vocab_size=256 + 3 + 3, pattern=SPLIT_PATTERNS["gpt2"])
    learned = [tok.token_bytes(i) for i in range(256, 256 + len(tok.merges))]
    assert learned == [b"do", b"dog", b" dog"]


@pytest.fixture(scope="module")
def shakespeare_bpe(request):
    from helpers import shakespeare_file

    text = shakespeare_file().read_text(encoding="utf-8")
    return BPETokenizer.train([text[: int(len(text) * 0.9)]], vocab_size=1024), text


def test_every_learned_token_lies_within_one_piece(shakespeare_bpe):
    tok, _ = shakespeare_bpe
    split = regex.compile(tok.pattern)
    for i in range(256, 256 + len(tok.merges)):
        piece = tok.token_bytes(i).decode("utf-8")  # Shakespeare is ASCII: every token is text
        assert split.findall(piece) == [piece], f"token {i} {piece!r} spans several pieces"


def test_tiktoken_encoder_agrees_with_reference_encoder(shakespeare_bpe):
    tok, text = shakespeare_bpe
    ids = tok.encode(text)
    assert ids == bpe_encode_reference(text, tok.merges, tok.pattern)
    assert tok.decode(ids) == text
    assert 2.5 < len(text) / len(ids) < 3.5  # 1024 tokens: ~3 characters per token


@pytest.fixture(scope="module")
def small_bpe():
    text = "Ünïcödé täxt, ½ 3.14159 — naïve café 你好世界 🙂🙃 " * 20 + "the quick brown fox " * 50
    return BPETokenizer.train([text], vocab_size=320)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_round_trips_any_unicode(small_bpe, text):
    assert small_bpe.decode(small_bpe.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=50))
def test_bpe_ids_are_bytes_when_untrained(text):
    tok = BPETokenizer([], SPLIT_PATTERNS["gpt4"])
    assert tok.encode(text) == list(text.encode("utf-8"))


def test_bpe_save_load_and_checkpoint_state(small_bpe, tmp_path):
    path = tmp_path / "bpe.json"
    small_bpe.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == small_bpe.merges and loaded.special_tokens == small_bpe.special_tokens
    torch.save({"tokenizer": small_bpe.state_dict()}, tmp_path / "t.ckpt")
    state = torch.load(tmp_path / "t.ckpt", weights_only=True)["tokenizer"]  # plain values only
    text = "the quick brown 🙂 fox"
    assert tokenizer_from_state(state).encode(text) == small_bpe.encode(text)


def test_bpe_load_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"kind": "char", "chars": "ab"}')
    with pytest.raises(ValueError, match="is not a BPE tokenizer file"):
        BPETokenizer.load(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BPETokenizer.load(tmp_path / "nope.json")


def test_bpe_stops_when_nothing_is_left_to_merge():
    with pytest.warns(UserWarning, match="only 3 pairs left to merge, fewer than the 10 asked for"):
        tok = BPETokenizer.train(["abcd"], vocab_size=256 + 10 + 3)
    assert tok.vocab_size == 256 + 3 + 3
    assert tok.encode("abcd") == [258]


# ---------------------------------------------------------------- special tokens, every kind


def _tokenizers(small_bpe):
    return {
        "char": CharTokenizer.from_text("ab<|endoftx>", special_tokens=[ENDOFTEXT]),
        "gpt2": TiktokenTokenizer("gpt2"),
        "bpe": small_bpe,
    }


@pytest.mark.parametrize("kind", ["char", "gpt2", "bpe"])
def test_special_token_text_is_ordinary_text_unless_allowed(kind, small_bpe):
    tok = _tokenizers(small_bpe)[kind]
    eot = tok.eot_id
    text = f"ab{ENDOFTEXT}ba"
    plain = tok.encode(text)
    assert eot not in plain  # user text cannot smuggle in a document boundary
    assert tok.decode(plain) == text
    for allowed in ("all", {ENDOFTEXT}):
        special = tok.encode(text, allowed_special=allowed)
        assert special.count(eot) == 1
        assert special == tok.encode("ab") + [eot] + tok.encode("ba")
        assert tok.decode(special) == text
    with pytest.raises(ValueError, match=r"allowed_special names \['<\|nope\|>'\], which this tokenizer does not have"):
        tok.encode(text, allowed_special={"<|nope|>"})


def test_bpe_has_pad_and_mask(small_bpe):
    pad, mask = small_bpe.special_tokens[PAD], small_bpe.special_tokens[MASK]
    assert small_bpe.encode(f"x{MASK}{PAD}", allowed_special="all")[-2:] == [mask, pad]
    assert small_bpe.decode([mask]) == MASK


def test_no_warning_when_training_enough_text():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BPETokenizer.train(["one two three four five six seven eight nine ten " * 10], vocab_size=270)
