"""gpt/interop/hf_tokenizer.py: our tokenizers written for transformers' AutoTokenizer give our ids
for any text and decode as ours do; an exported checkpoint generates in transformers'
pipeline exactly what it generates here. Offline: models are built and trained locally,
tiktoken's encodings come from TIKTOKEN_CACHE_DIR."""

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.interop.checkpoint import load_model
from gpt.interop.hf import export_checkpoint, save_hf
from gpt.interop.hf_tokenizer import onig_pattern, save_hf_tokenizer
from gpt.model.generation import generate
from gpt.model.models import GPT
from gpt.tokenizers import ENDOFTEXT, MASK, PAD, SPECIAL_TOKENS, BPETokenizer, CharTokenizer, TiktokenTokenizer
from helpers import LINES_TEXT, ROOT, smallest_config, trained_checkpoint

transformers = pytest.importorskip("transformers")

# Newlines and runs of spaces (trailing ones too), tabs, carriage returns, long numbers
# (cl100k cuts them into threes), contractions, accents, emoji, and special tokens.
TEXTS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n",
    "a  \nb   \n\n\n  ",
    "\ttabs\t\there\r\n\r\nand 1234567 or 3.14159",
    "I'M sure it's they'll WE'VE",
    "Speak , speak . You 're all ? don 't !",  # no "clean up" of the spaces before punctuation
    "café naïve é 你好 🙂🙃 👩‍👩‍👧 \u00a0nbsp\u3000",
    "<|endoftext|>All:<|pad|> Speak<|mask|><|endoftext|>",
    " ",
    "",
]


def hf_tokenizer_of(tokenizer, folder):
    save_hf_tokenizer(tokenizer, folder, block_size=64)
    return transformers.AutoTokenizer.from_pretrained(folder)


def assert_same_ids(ours, hf, text):
    ids = ours.encode(text, allowed_special="all")  # transformers matches special tokens everywhere
    assert hf(text)["input_ids"] == ids
    assert hf(text, split_special_tokens=True)["input_ids"] == ours.encode(text)  # specials as plain text
    assert hf.decode(ids) == ours.decode(ids) == text


@pytest.fixture(scope="module")
def char(tmp_path_factory):
    ours = CharTokenizer.from_text(LINES_TEXT + "<|>\txé🙂", SPECIAL_TOKENS)  # spells the specials too
    return ours, hf_tokenizer_of(ours, tmp_path_factory.mktemp("char"))


@pytest.fixture(scope="module", params=["bpe", "gpt2", "cl100k_base"])
def byte_level(request, tmp_path_factory):
    if request.param == "bpe":
        ours = BPETokenizer.train([LINES_TEXT], vocab_size=300)
    else:
        ours = TiktokenTokenizer(request.param)
    return ours, hf_tokenizer_of(ours, tmp_path_factory.mktemp(request.param))


def test_char_ids_are_ours(char):
    ours, hf = char
    texts = ["First Citizen:\nBefore we", " \n\n  All:\té🙂", "Speak , you 're . ", "<|endoftext|>A:<|pad|>", ""]
    for text in texts:
        assert_same_ids(ours, hf, text)
    assert hf("All:")["input_ids"] == [ours.stoi[c] for c in "All:"]  # one id a character, no BOS added
    with pytest.raises(ValueError, match="character 'ç' at position 2 is not in the tokenizer's vocabulary"):
        ours.encode("façade")
    with pytest.raises(Exception, match="Missing \\[UNK\\]"):  # refused there too, not skipped or mapped
        hf("façade")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_char_ids_are_ours_for_any_text_in_the_vocabulary(char, data):
    ours, hf = char
    pieces = st.one_of(st.text(alphabet=ours.chars), st.sampled_from(SPECIAL_TOKENS))
    assert_same_ids(ours, hf, "".join(data.draw(st.lists(pieces, max_size=8))))


def test_byte_level_ids_are_ours(byte_level):
    ours, hf = byte_level
    for text in [*TEXTS, "".join(ours.special_tokens)]:
        assert_same_ids(ours, hf, text)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_byte_level_ids_are_ours_for_any_text(byte_level, data):
    ours, hf = byte_level
    specials = list(ours.special_tokens)
    pieces = st.one_of(st.text(), st.text(alphabet=" \n\t\r0123456789'sS"), st.sampled_from(specials))
    assert_same_ids(ours, hf, "".join(data.draw(st.lists(pieces, max_size=6))))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_ids_decode_as_ours(byte_level, data):
    """Ids that cut a character's bytes apart decode to the same U+FFFD replacements."""
    ours, hf = byte_level
    ids = data.draw(st.lists(st.sampled_from([*range(300), *ours.special_tokens.values()]), max_size=10))
    assert hf.decode(ids) == ours.decode(ids)


def test_special_tokens_and_context_length(byte_level, char):
    for ours, hf in (byte_level, char):
        assert hf.eos_token == hf.bos_token == ENDOFTEXT and hf.eos_token_id == ours.eot_id
        assert hf.model_max_length == 64
        if PAD in ours.special_tokens:
            assert (hf.pad_token_id, hf.mask_token_id) == (ours.special_tokens[PAD], ours.special_tokens[MASK])
        else:
            assert hf.pad_token is None and hf.mask_token is None


def test_the_split_regex_is_rewritten_for_oniguruma():
    assert onig_pattern(r"\p{N}{1,3}+|\s++$|\s") == r"\p{N}{1,3}|\s++\z|\s"
    assert onig_pattern(r"\$x") == r"\$x"


# ---- an exported checkpoint in transformers' pipeline


def assert_pipeline_generates_as_we_do(model, tokenizer, out_dir, prompt: str, varied: bool = True) -> None:
    """transformers' greedy text generation from the exported folder gives our greedy ids and text."""
    prompt_ids = tokenizer.encode(prompt)
    ours = generate(model, torch.tensor([prompt_ids]), max_new_tokens=20, temperature=0)[0].tolist()
    assert tokenizer.eot_id not in ours  # transformers would stop there; we write on
    if varied:  # text, not one token over and over: a comparison with teeth
        assert len(set(ours[len(prompt_ids) :])) > 5
    pipe = transformers.pipeline("text-generation", model=str(out_dir))
    theirs = pipe(prompt, do_sample=False, max_new_tokens=20, return_tensors=True)[0]["generated_token_ids"]
    assert list(theirs) == ours
    text = pipe(prompt, do_sample=False, max_new_tokens=20)[0]["generated_text"]
    assert text == tokenizer.decode(ours)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_exported_checkpoint_generates_in_transformers_as_here(kind, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if kind == "char":
        tokenizer = CharTokenizer.from_text(LINES_TEXT, SPECIAL_TOKENS)
    else:
        tokenizer = BPETokenizer.train([LINES_TEXT], vocab_size=300)
    model = trained_checkpoint(tokenizer, tmp_path / "last.ckpt")
    export_checkpoint(str(tmp_path / "last.ckpt"), str(tmp_path / "out"))
    assert "model.safetensors, config.json and tokenizer.json" in capsys.readouterr().out
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} | {
        "special_tokens_map.json"
    }
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    specials = tokenizer.special_tokens
    assert (config["eos_token_id"], config["bos_token_id"], config["pad_token_id"]) == (
        specials[ENDOFTEXT],
        specials[ENDOFTEXT],
        specials[PAD],
    )
    assert_pipeline_generates_as_we_do(model, tokenizer, tmp_path / "out", "All:\nSpe")


def test_a_tokenizer_that_does_not_fit_the_model_is_refused_before_anything_is_written(tmp_path):
    model = GPT(smallest_config())
    with pytest.raises(ValueError, match="the tokenizer has 3 tokens but the model 10"):
        save_hf(model, tmp_path / "out", tokenizer=CharTokenizer("abc"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # two command-line fits (shared with other tests) and an export process
@pytest.mark.parametrize("fit", ["trained", "trained_bpe"])
def test_a_fitted_checkpoint_exported_by_the_command_generates_as_here(fit, request, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, checkpoint, _, _ = request.getfixturevalue(fit)
    command = [
        sys.executable,
        "-W",
        "error::RuntimeWarning",
        "-m",
        "gpt.interop.hf",
        str(checkpoint),
        str(tmp_path / "out"),
    ]
    export = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert export.returncode == 0, export.stderr[-3000:]
    assert "RuntimeWarning" not in export.stderr
    model, tokenizer = load_model(checkpoint)
    # The shared fits train for 12 steps only: their greedy text repeats a token or two.
    assert_pipeline_generates_as_we_do(model, tokenizer, tmp_path / "out", "First", varied=False)


@pytest.mark.slow
def test_the_export_command_starts_without_a_runpy_warning():
    """`python -m gpt.interop.hf` runs gpt/interop/hf.py as __main__: importing the gpt package first must
    not import gpt.interop.hf too, or runpy warns that it is run twice."""
    command = [sys.executable, "-W", "error::RuntimeWarning", "-m", "gpt.interop.hf", "--help"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage:" in result.stdout and "RuntimeWarning" not in result.stderr
