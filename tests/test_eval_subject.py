"""What python -m gpt.eval evaluates (gpt/eval/subject.py): a checkpoint, a run folder's newest
last.ckpt, or a Hugging Face GPT-2 folder with GPT-2's tokenizer (a chat export with its
template), and the identity its results are filed under."""

import os

import pytest
import torch

from gpt.eval.subject import load_subject, resolve_subject
from gpt.eval.tasks.files import sha256_of
from gpt.interop.hf import save_hf
from gpt.model.models import GPT
from gpt.tokenizers import CHAT_TOKENS, CharTokenizer, TiktokenTokenizer
from helpers import tiny_config, write_checkpoint

GPT2 = TiktokenTokenizer("gpt2")


def tiny_gpt(vocab_size: int) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(vocab_size=vocab_size)).eval()


def test_a_run_folder_is_its_newest_last_checkpoint(tmp_path):
    chars = CharTokenizer.from_text("ab")
    old = write_checkpoint(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt", tiny_gpt(2), chars)
    new = write_checkpoint(tmp_path / "run" / "version_1" / "checkpoints" / "last.ckpt", tiny_gpt(2), chars)
    os.utime(old, (1e9, 1e9))  # older, whatever the file system's clock says
    assert resolve_subject(tmp_path / "run") == new
    assert resolve_subject(tmp_path / "run" / "version_0") == old
    assert resolve_subject(new) == new
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="nor is it a Hugging Face GPT-2 folder, which holds a config.json"):
        resolve_subject(tmp_path / "empty")


def test_a_checkpoint_is_filed_under_its_bytes_step_and_shape(tmp_path):
    ckpt = write_checkpoint(tmp_path / "m.ckpt", tiny_gpt(GPT2.vocab_size), GPT2, template="alpaca", step=30)
    subject = load_subject(ckpt)
    assert subject.template.name == "alpaca"
    identity = subject.identity
    assert (identity["path"], identity["kind"], identity["step"]) == (str(ckpt), "checkpoint", 30)
    assert identity["sha256"] == sha256_of(ckpt) and identity["model_config"]["vocab_size"] == 50257
    assert identity["parameters"] == sum(p.numel() for p in subject.model.parameters())


def test_a_hugging_face_folder_is_read_with_gpt2s_tokenizer_and_its_chat_template(tmp_path):
    chat = GPT2.with_special_tokens(CHAT_TOKENS)
    model = tiny_gpt(chat.vocab_size)
    save_hf(model, tmp_path / "chat", tokenizer=chat, template="chat")
    subject = load_subject(tmp_path / "chat")
    assert subject.template.name == "chat" and subject.tokenizer.special_tokens == chat.special_tokens
    assert subject.identity["kind"] == "hugging face" and subject.identity["step"] is None
    assert subject.identity["sha256"] == sha256_of(tmp_path / "chat" / "model.safetensors")
    x = torch.tensor([[1, 2, 3]])
    assert torch.allclose(subject.model(x), model(x), atol=1e-6)
    save_hf(tiny_gpt(50), tmp_path / "chars")
    with pytest.raises(ValueError, match="has 50 tokens, not GPT-2's tokenizer's 50,257"):
        load_subject(tmp_path / "chars")
