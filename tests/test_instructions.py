"""gpt/data/instructions.py, templates.py, finetuning.py: records read and checked by file and
line, rendered by a template, encoded with the replies marked, split and padded."""

import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gpt.data.datasets import ResumableSampler
from gpt.data.finetuning import InstructionData, InstructionSet, PadExamples, build_examples, split_records
from gpt.data.instructions import Encoded, encode_record, read_records
from gpt.data.templates import ALPACA_PREAMBLE, Message, template
from gpt.model.masking import IGNORE_INDEX
from gpt.tokenizers import CHAT_TOKENS, END, ENDOFTEXT, CharTokenizer, TiktokenTokenizer
from helpers import write_jsonl

ALPACA = [
    {"instruction": "Name a color.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
]
CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
}


def gpt2():
    return TiktokenTokenizer("gpt2").with_special_tokens(CHAT_TOKENS)


def test_templates_render_the_text_transformers_will_see():
    alpaca = template("alpaca").render([Message("user", "Add.", "2 and 3"), Message("assistant", "5")])
    text = "".join(s.text for s in alpaca)
    assert (
        text == f"{ALPACA_PREAMBLE}\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n5{ENDOFTEXT}\n\n"
    )
    assert [s.text for s in alpaca if s.trained] == [f"5{ENDOFTEXT}"]
    chat = template("chat").prompt([Message("system", "Be brief."), Message("user", "Hi")])
    assert chat == "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"


@pytest.mark.parametrize(
    "tokenizer",
    [gpt2(), CharTokenizer.from_text(ALPACA_PREAMBLE + str(ALPACA) + str(CHAT) + "### Instruction Input Response:\n")],
)
def test_the_trained_tokens_are_the_replies_and_their_end(tmp_path, tokenizer):
    records = read_records(write_jsonl(tmp_path / "a.jsonl", ALPACA + [CHAT]))
    tokenizer = tokenizer.with_special_tokens((*CHAT_TOKENS, ENDOFTEXT))
    for record, name in zip(records, ["alpaca", "alpaca", "chat"]):
        (e,) = encode_record(record, tokenizer, template(name))
        trained = tokenizer.decode([i for i, t in zip(e.ids, e.trained) if t])
        end = ENDOFTEXT if name == "alpaca" else END
        replies = [m.content for m in record.messages if m.role == "assistant"]
        assert trained == "".join(r + end for r in replies)
        assert tokenizer.decode(e.ids) == "".join(s.text for s in template(name).render(list(record.messages)))


def test_records_name_their_file_and_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ALPACA, indent=2))
    first, second = read_records(path)
    assert (first.where, second.where) == (f"{path}:2", f"{path}:7")  # where each object starts
    assert first.format == "alpaca" and second.messages[0].input == "2 and 3"
    problem = {"question": "Natalia sold 48 clips ...", "answer": "She sold 48/2 = 24 ...\n#### 72", "id": 3}
    (record,) = read_records(write_jsonl(tmp_path / "gsm8k.jsonl", [problem]))  # a problem and its worked answer
    assert [(m.role, m.content) for m in record.messages] == [
        ("user", problem["question"]),
        ("assistant", problem["answer"]),
    ]
    assert record.format == "chat"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.json", '[{"instruction": "x", "output": "y"},\n {"instruction": "x" "output": "y"}]', "a.json:2: not JSON"),
        ("a.jsonl", '{"instruction": "x", "input": "", "output": "y"}\n{"instruction": \n', "a.jsonl:2: not JSON"),
        ("a.jsonl", '{"instruction": "x", "output": "y"}\n', "a.jsonl:1: the record has no 'input' field"),
        ("a.jsonl", '{"instruction": "x", "input": "", "output": " "}\n', "a.jsonl:1: 'output' is empty"),
        ("a.jsonl", '{"messages": [{"role": "robot", "content": "x"}]}\n', "a.jsonl:1: message 0 has role 'robot'"),
        ("a.jsonl", '{"messages": [{"role": "user", "content": "x"}]}\n', "a.jsonl:1: the last message is the user's"),
        ("a.jsonl", '{"messages": []}\n', "a.jsonl:1: 'messages' must be a non-empty list"),
        ("a.jsonl", '{"text": "x"}\n', "a.jsonl:1: neither an Alpaca record"),
        ("a.jsonl", '["x"]\n', "a.jsonl:1: a record must be a JSON object"),
        ("a.json", '{"instruction": "x"}', "a.json:1: not JSON (Expecting '['"),
        ("a.txt", "x", "is not .json or .jsonl"),
    ],
)
def test_a_bad_record_is_one_error_naming_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_records(tmp_path / name)


def test_a_template_token_in_the_text_is_refused(tmp_path):
    records = read_records(
        write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Say <|end|>", "input": "", "output": "x"}])
    )
    with pytest.raises(ValueError, match=r"a.jsonl:1: the text holds <\|end\|>, a token of the chat"):
        encode_record(records[0], gpt2(), template("chat"))


def test_changing_a_prompt_tokens_label_changes_nothing():
    e = Encoded([5, 6, 7, 8, 9, 10], [False, False, False, True, True, True], "x")
    changed = Encoded([5, 6, 99, 8, 9, 10], e.trained, "x")  # the label of position 1 is a prompt token
    logits = torch.randn(1, 5, 100, generator=torch.Generator().manual_seed(0))
    loss = {}
    for name, on_prompt in (("replies", False), ("all", True)):
        (_, y1, _), (_, y2, _) = (PadExamples(0, on_prompt)([[x]]) for x in (e, changed))
        loss[name] = [F.cross_entropy(logits[0], y[0], ignore_index=IGNORE_INDEX) for y in (y1, y2)]
        if not on_prompt:
            assert y1.tolist() == y2.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 8, 9, 10]]
    assert loss["replies"][0] == loss["replies"][1]  # the reply's loss alone: the prompt's label is not in it
    assert loss["all"][0] != loss["all"][1]  # train_on_prompt: it is


def test_batches_are_padded_to_the_longest_with_the_attention_mask():
    a, b = Encoded([1, 2, 3], [False, True, True], "a"), Encoded([1, 2, 3, 4, 5], [False] * 3 + [True] * 2, "b")
    x, y, mask = PadExamples(0)([[a], [b]])
    assert x.tolist() == [[1, 2, 0, 0], [1, 2, 3, 4]]
    assert y.tolist() == [[2, 3, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 4, 5]]
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    x, y, mask = PadExamples(0)([[a, b], [b, a]])  # preference pairs: the chosen rows, then the rejected
    assert x.shape == (4, 4) and mask.sum(1).tolist() == [2, 4, 4, 2]


def test_the_held_out_split_is_by_records_seeded():
    records = list(range(100))
    train, val = split_records(records, 0.1, seed=1)
    assert len(val) == 10 and sorted(train + val) == records
    assert split_records(records, 0.1, seed=1) == (train, val) and split_records(records, 0.1, seed=2)[1] != val


def test_too_long_records_are_cut_and_counted_or_refused(tmp_path, caplog):
    long = [{"instruction": "x", "input": "", "output": "word " * 200}, ALPACA[0]]
    records = read_records(write_jsonl(tmp_path / "a.jsonl", long))
    args = (gpt2(), template("alpaca"), 64)
    with caplog.at_level(logging.INFO, logger="gpt"):
        examples = build_examples(records, *args, "truncate", pairs=False)
    assert [len(e.ids) for (e,) in examples][0] == 65 and "1 of 2 examples were longer than 65 tokens" in caplog.text
    with pytest.raises(ValueError, match=r"a.jsonl:1: the record is 2\d\d tokens, longer than the context of 64"):
        build_examples(records, *args, "refuse", pairs=False)


def test_a_character_tokenizer_that_cannot_write_the_template_is_refused(tmp_path):
    data = InstructionSet(InstructionData(path=str(write_jsonl(tmp_path / "a.jsonl", ALPACA))), pairs=False)
    with pytest.raises(ValueError, match="the alpaca template's text cannot be written by CharTokenizer"):
        data.tokenizer(CharTokenizer("abc \n", [ENDOFTEXT]))
    assert data.tokenizer(gpt2()).vocab_size == 50261  # auto: a tokenizer with the chat tokens chats
    assert data.template.name == "chat"


def test_batches_hold_examples_of_about_one_length_in_a_resumable_order():
    lengths = [3, 50, 7, 40, 9, 30, 11, 20] * 4
    sampler = ResumableSampler(len(lengths), seed=0, lengths=lengths, group=8)
    order = list(sampler)
    assert sorted(order) == list(range(32)) and order == list(ResumableSampler(32, 0, lengths=lengths, group=8))
    for chunk in range(0, 32, 8):
        run = [lengths[i] for i in order[chunk : chunk + 8]]
        assert run == sorted(run, reverse=True)  # longest first within each run of 8
    sampler.resume(0, 10)
    assert list(sampler) == order[10:]


# ---- the assistant recipe's files, fetched on first use


def test_the_recipes_instruction_file_is_downloaded_once_and_checked(tmp_path, monkeypatch):
    import contextlib
    import hashlib
    import io

    import gpt.data.download as download

    monkeypatch.chdir(tmp_path)
    path = Path("data/instructions/alpaca-1100.json")  # as configs/assistant/sft_cpu.yaml names it

    def offline(address, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as error:
        read_records(path)
    for part in (
        "could not download the assistant recipe's alpaca-1100.json",
        "put the file at data/instructions/alpaca-1100.json or pass its path with --data.instructions.path PATH",
    ):
        assert part in str(error.value)
    with pytest.raises(FileNotFoundError, match="instruction file 'mine.json' does not exist"):
        read_records("mine.json")  # not the recipe's: nothing to fetch

    published = json.dumps(ALPACA).encode()
    url = download.RECIPE_INSTRUCTIONS["alpaca-1100.json"][0]
    monkeypatch.setitem(download.RECIPE_INSTRUCTIONS, "alpaca-1100.json", (url, hashlib.md5(published).hexdigest()))
    asked = []

    def serve(body: bytes):
        def urlopen(address, timeout):
            asked.append(address)
            return contextlib.nullcontext(io.BytesIO(body))  # used in a with, as urlopen's response is

        return urlopen

    monkeypatch.setattr(download.urllib.request, "urlopen", serve(b"[]  tampered"))
    with pytest.raises(ValueError, match="downloaded alpaca-1100.json has md5 .*; expected .* Nothing was written"):
        read_records(path)
    assert not path.exists()

    monkeypatch.setattr(download.urllib.request, "urlopen", serve(published))
    assert [r.messages[-1].content for r in read_records(path)] == ["Blue.", "5"]
    assert path.read_bytes() == published and asked[-1] == url
    assert len(read_records(path)) == 2 and len(asked) == 2  # read from the file the second time
