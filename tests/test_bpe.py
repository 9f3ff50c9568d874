"""gpt/tokenizers/bpe.py: learning byte-pair merges, and the reference encoder tiktoken is checked against."""

import warnings

import pytest
import regex

from gpt.tokenizers import BPETokenizer
from gpt.tokenizers.bpe import SPLIT_PATTERNS, bpe_encode_reference, merge, train_bpe
from helpers import shakespeare_file


def token_bytes(tok: BPETokenizer, i: int) -> bytes:
    return tok.enc.decode_single_token_bytes(i)


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
    learned = [token_bytes(tok, i) for i in range(256, 256 + len(tok.merges))]
    assert learned == [b"do", b"dog", b" dog"]


@pytest.fixture(scope="module")
def shakespeare_bpe(request):
    text = shakespeare_file().read_text(encoding="utf-8")
    return BPETokenizer.train([text[: int(len(text) * 0.9)]], vocab_size=1024), text


def test_every_learned_token_lies_within_one_piece(shakespeare_bpe):
    tok, _ = shakespeare_bpe
    split = regex.compile(tok.pattern)
    for i in range(256, 256 + len(tok.merges)):
        piece = token_bytes(tok, i).decode("utf-8")  # Shakespeare is ASCII: every token is text
        assert split.findall(piece) == [piece], f"token {i} {piece!r} spans several pieces"


def test_tiktoken_encoder_agrees_with_reference_encoder(shakespeare_bpe):
    tok, text = shakespeare_bpe
    ids = tok.encode(text)
    assert ids == bpe_encode_reference(text, tok.merges, tok.pattern)
    assert tok.decode(ids) == text
    assert 2.5 < len(text) / len(ids) < 3.5  # 1024 tokens: ~3 characters per token


def test_bpe_stops_when_nothing_is_left_to_merge():
    with pytest.warns(UserWarning, match="only 3 pairs left to merge, fewer than the 10 asked for"):
        tok = BPETokenizer.train(["abcd"], vocab_size=256 + 10 + 3)
    assert tok.vocab_size == 256 + 3 + 3
    assert tok.encode("abcd") == [258]


def test_no_warning_when_training_enough_text():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BPETokenizer.train(["one two three four five six seven eight nine ten " * 10], vocab_size=270)
