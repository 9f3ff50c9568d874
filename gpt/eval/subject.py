"""What an evaluation evaluates: a checkpoint of ours (full, LoRA -- merged --, fine-tuned with a
template), a run folder (its newest last.ckpt), or a Hugging Face GPT-2 folder; its model,
tokenizer, chat template, and the identity a result is filed under (path, sha256, step, config).

    subject = load_subject("lightning_logs/gpt2_sft/version_0")
    subject.model, subject.tokenizer, subject.template, subject.identity

Plain torch, no Lightning.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpt.data.templates import JINJA, TEMPLATES, Template
from gpt.eval.tasks.files import sha256_of
from gpt.interop.checkpoint import checkpoint_tokenizer, load_checkpoint, model_of, resolve_checkpoint
from gpt.model.models import LanguageModel
from gpt.tokenizers import TiktokenTokenizer, Tokenizer


@dataclass
class Subject:
    model: LanguageModel
    tokenizer: Tokenizer
    template: Template | None  # a fine-tuned model's chat or alpaca template: its items are asked through it
    identity: dict[str, Any]  # path, kind, sha256 of the weights' file, step, template, model config


def resolve_subject(path: str | Path) -> Path:
    """A Hugging Face folder (config.json) as given; anything else as every command that takes
    a checkpoint reads it (a run folder: its newest last.ckpt)."""
    path = Path(path)
    if is_hf_folder(path):
        return path
    try:
        return resolve_checkpoint(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}; nor is it a Hugging Face GPT-2 folder, which holds a config.json") from None


def load_subject(path: str | Path) -> Subject:
    path = resolve_subject(path)
    if is_hf_folder(path):
        return hf_subject(path)
    return checkpoint_subject(path, load_checkpoint(path))


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def checkpoint_subject(path: Path, checkpoint: dict[str, Any]) -> Subject:
    """The subject of a checkpoint already read (load_checkpoint) from path."""
    model, tokenizer = model_of(checkpoint, path), checkpoint_tokenizer(checkpoint)
    if tokenizer is None:
        raise ValueError(f"checkpoint {str(path)!r} has no tokenizer; evaluate one that main.py fit wrote")
    name = checkpoint.get("template")
    return Subject(
        model, tokenizer, TEMPLATES[name] if name else None, identity(path, "checkpoint", model, name, checkpoint)
    )


def hf_subject(folder: Path) -> Subject:
    """A Hugging Face GPT-2 folder: the model through gpt.interop.hf, GPT-2's tokenizer (with
    the chat template's tokens when the folder is a chat model we exported)."""
    from gpt.interop.hf import from_hf

    model = from_hf(folder).eval()
    config_file = folder / "tokenizer_config.json"
    jinja = json.loads(config_file.read_text()).get("chat_template") if config_file.is_file() else None
    name = next((n for n, text in JINJA.items() if text == jinja), None)
    tokenizer = TiktokenTokenizer("gpt2")
    if name is not None:
        tokenizer = tokenizer.with_special_tokens(TEMPLATES[name].special_tokens)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"the Hugging Face model in {str(folder)!r} has {model.config.vocab_size:,} tokens, not GPT-2's "
            f"tokenizer's {tokenizer.vocab_size:,}: only GPT-2's tokenizer is read from a folder; evaluate the "
            "checkpoint of ours it was exported from"
        )
    names = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    weights = next((folder / n for n in names if (folder / n).is_file()), folder)
    return Subject(model, tokenizer, TEMPLATES[name] if name else None, identity(weights, "hugging face", model, name))


def identity(
    path: Path, kind: str, model: LanguageModel, template: str | None, checkpoint: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a result is filed under: which file (its sha256: the same bytes, the same model),
    the training step it was saved at, and the model's shape."""
    return {
        "path": str(path),
        "kind": kind,
        "sha256": sha256_of(path) if path.is_file() else None,  # a sharded checkpoint is a folder
        "step": int(checkpoint.get("global_step", 0)) if checkpoint is not None else None,
        "template": template,
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_config": asdict(model.config),
    }
