import pytest

from gpt.tokenizers import CharTokenizer, tokenizer_from_state


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
    tok = CharTokenizer.from_text("the quick brown fox")
    restored = tokenizer_from_state(tok.state_dict())
    assert restored.chars == tok.chars
    assert restored.encode("quick fox") == tok.encode("quick fox")


def test_unknown_state_kind_is_refused():
    with pytest.raises(ValueError, match="unknown tokenizer kind 'nope'"):
        tokenizer_from_state({"kind": "nope"})


def test_tiny_shakespeare_has_65_characters(shakespeare):
    text = shakespeare.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    assert tok.decode(tok.encode(text[:5000])) == text[:5000]
