"""gpt/tokenizers.py: characters, tiktoken's encodings and our BPE behind one interface;
special tokens; the state a checkpoint carries."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.tokenizers import (
    CHAT_TOKENS,
    ENDOFTEXT,
    MASK,
    PAD,
    BPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    tokenizer_from_state,
)
from gpt.tokenizers.bpe import SPLIT_PATTERNS
from gpt.tokenizers.settings import tokenizer_config

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
    with pytest.raises(
        ValueError, match=r"unknown tiktoken encoding 'gpt5'; known encodings: gpt2, r50k_base, .*cl100k_base"
    ):
        TiktokenTokenizer("gpt5")
    with pytest.raises(ValueError, match=r"unknown tiktoken encoding 'gpt5'; known encodings: gpt2"):
        tokenizer_config("tiktoken", encoding="gpt5")


def test_encoding_that_cannot_be_loaded_offline_names_the_cache_dir(tmp_path, monkeypatch):
    requests = pytest.importorskip("requests")

    def offline(url, *args, **kwargs):
        raise requests.ConnectionError(f"Failed to resolve host of {url}")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setattr(requests, "get", offline)
    message = (
        rf"could not load tiktoken encoding 'o200k_base' \(ConnectionError.*TIKTOKEN_CACHE_DIR \(now: {tmp_path}\)"
    )
    with pytest.raises(ValueError, match=message):
        TiktokenTokenizer("o200k_base")


# ---------------------------------------------------------------- our BPE


def test_bpe_vocabulary_layout():
    tok = BPETokenizer.train(["the cat sat on the mat " * 50], vocab_size=270)
    assert tok.vocab_size == 270
    assert len(tok.merges) == 270 - 256 - 3
    assert tok.special_tokens == {ENDOFTEXT: 267, PAD: 268, MASK: 269}
    token_bytes = tok.enc.decode_single_token_bytes
    assert token_bytes(97) == b"a"  # ids 0-255 are the bytes
    assert token_bytes(256) == token_bytes(tok.merges[0][0]) + token_bytes(tok.merges[0][1])


def test_bpe_vocab_size_below_bytes_and_specials_is_refused():
    with pytest.raises(
        ValueError,
        match=r"BPE vocab_size 258 is too small: it needs at least 256 byte tokens \+ 3 special tokens = 259",
    ):
        BPETokenizer.train(["some text"], vocab_size=258)
    with pytest.raises(ValueError, match="BPE vocab_size 100 is too small"):
        tokenizer_config("bpe", vocab_size=100)


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


def test_bpe_encodes_and_decodes_pad_and_mask(small_bpe):
    pad, mask = small_bpe.special_tokens[PAD], small_bpe.special_tokens[MASK]
    assert small_bpe.encode(f"x{MASK}{PAD}", allowed_special="all")[-2:] == [mask, pad]
    assert small_bpe.decode([mask]) == MASK


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


def test_tiktoken_backed_tokenizers_list_their_special_tokens_in_id_order(small_bpe):
    assert list(small_bpe.special_tokens.items()) == [(ENDOFTEXT, 317), (PAD, 318), (MASK, 319)]
    ids = list(TiktokenTokenizer("cl100k_base").special_tokens.values())
    assert len(ids) == 5 and ids == sorted(ids)


@pytest.mark.parametrize("kind", ["char", "tiktoken", "bpe"])
def test_chat_tokens_join_any_tokenizer_after_its_vocabulary_and_travel_in_its_state(kind):
    base = {
        "char": CharTokenizer("ab \n", special_tokens=[ENDOFTEXT]),
        "tiktoken": TiktokenTokenizer("gpt2"),
        "bpe": BPETokenizer([], SPLIT_PATTERNS["gpt4"]),
    }[kind]
    chat = base.with_special_tokens(CHAT_TOKENS)
    assert chat.vocab_size == base.vocab_size + 4
    assert [chat.special_tokens[t] for t in CHAT_TOKENS] == list(range(base.vocab_size, base.vocab_size + 4))
    assert chat.with_special_tokens(CHAT_TOKENS) is chat  # nothing missing: the same tokenizer
    text = "<|user|>\nab<|end|>\n"
    ids = chat.encode(text, allowed_special=set(CHAT_TOKENS))
    assert ids[0] == chat.special_tokens["<|user|>"] and chat.decode(ids) == text
    if kind == "char":  # not allowed: the marker is text, which these four characters cannot spell
        with pytest.raises(ValueError, match="character '<' at position 0 is not in"):
            chat.encode(text)
    else:  # not allowed: the marker is text, as any special token
        assert chat.encode(text)[0] != ids[0]
    again = tokenizer_from_state(chat.state_dict())
    assert again.special_tokens == chat.special_tokens and again.encode(text, allowed_special="all") == ids
    assert b"".join(chat.token_bytes(i) for i in ids) == text.encode()
