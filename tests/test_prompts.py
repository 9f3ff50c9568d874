"""gpt/data/prompts.py: prompts typed on the command line or read from a file."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.data.prompts import prompt_items, read_prompts, unescape


def test_unescape_prompt():
    assert unescape("x\\-y") == "x\\-y"  # an escape Python does not know stays as typed
    with pytest.raises(ValueError, match="has a broken escape sequence .*; write \\\\\\\\ for a backslash"):
        unescape("bad\\x")
    assert unescape("ROMEO:\\nO") == "ROMEO:\nO"
    assert unescape("naïve\\tx") == "naïve\tx"
    assert unescape("plain") == "plain"


def test_text_file_one_prompt_a_line_with_escapes(tmp_path):
    (tmp_path / "p.txt").write_text("First\n\nAll:\\nSpeak\n", encoding="utf-8")
    assert read_prompts(str(tmp_path / "p.txt")) == ["First", "All:\nSpeak"]  # blank lines skipped


def test_jsonl_strings_or_objects(tmp_path):
    (tmp_path / "p.jsonl").write_text('"First"\n{"prompt": "All:\\nSp"}\n\n"Be"\n', encoding="utf-8")
    assert read_prompts(str(tmp_path / "p.jsonl")) == ["First", "All:\nSp", "Be"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('"ok"\nnot json\n', "line 2: not JSON"),
        ('{"text": "x"}\n', 'line 1: expected a non-empty string, {"prompt": "..."} or {"messages"'),
        ('""\n', "line 1: expected a non-empty string"),
        ("\n\n", "has no prompts"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    (tmp_path / "p.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        read_prompts(str(tmp_path / "p.jsonl"))


def test_a_broken_escape_in_a_text_file_names_the_line(tmp_path):
    (tmp_path / "p.txt").write_text("ok\nbad\\x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.txt, line 2: the prompt 'bad\\\\x' has a broken escape sequence"):
        read_prompts(str(tmp_path / "p.txt"))


def test_missing_prompts_file():
    with pytest.raises(FileNotFoundError, match="prompts file 'nope.txt' does not exist"):
        read_prompts("nope.txt")


def test_every_sample_of_every_prompt_in_order():
    assert prompt_items(["a", None], 2) == [
        {"index": 0, "sample": 0, "prompt": "a"},
        {"index": 0, "sample": 1, "prompt": "a"},
        {"index": 1, "sample": 0, "prompt": None},
        {"index": 1, "sample": 1, "prompt": None},
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), max_size=8), st.sampled_from([".txt", ".jsonl"]))
def test_any_prompts_file_gives_prompts_or_one_clear_error(tmp_path_factory, lines, suffix):
    path = tmp_path_factory.mktemp("prompts") / f"p{suffix}"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        prompts = read_prompts(str(path))
    except ValueError as e:
        assert str(path) in str(e) or "line" in str(e)  # names the file or the line
    else:
        assert prompts and all(isinstance(p, str) and p for p in prompts)
