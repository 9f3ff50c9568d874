"""The one place that opens a checkpoint written by `python main.py fit`.

    checkpoint = load_checkpoint("lightning_logs/.../last.ckpt")   # checked, weights_only
    config = model_config(checkpoint)          # the GPTConfig it was trained with
    tokenizer = checkpoint_tokenizer(checkpoint)
    model, tokenizer = load_model("lightning_logs/.../last.ckpt")  # a plain torch model, eval mode
    path = resolve_checkpoint("lightning_logs/NAME")  # a run folder: its newest last.ckpt

A checkpoint is read with `torch.load(..., weights_only=True)`: tensors and plain Python
values only, so loading one never runs code from it. Plain torch, no Lightning.
"""

from __future__ import annotations

import pickle
import re
import sys
import zipfile
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from gpt.model.config import FIELDS, GPTConfig
from gpt.model.lora import LoRASettings, apply_lora, merge_lora
from gpt.model.models import LanguageModel, build_model
from gpt.tokenizers import Tokenizer, tokenizer_from_state

MODEL_PREFIX = "model."  # the LightningModule keeps the model as self.model
# FSDP's sharded checkpoint (Lightning's FSDPStrategy, state_dict_type="sharded") is a folder:
# each rank's shard of the weights and optimizer state (torch.distributed.checkpoint's .distcp
# files) and META, everything else (settings, tokenizer, loops). Read here: META, marked SHARDED.
META = "meta.pt"
SHARDED = "sharded_folder"
LAST = "last.ckpt"  # a run's latest state, in lightning_logs/NAME/version_N/checkpoints/


def version_number(folder: Path) -> int | None:
    """N of a version_N folder, else None."""
    match = re.fullmatch(r"version_(\d+)", folder.name)
    return int(match.group(1)) if match else None


def run_folders(experiment: Path) -> list[Path]:
    """The version_N folders of an experiment (lightning_logs/X), newest first."""
    if not experiment.is_dir():
        return []
    folders = [p for p in experiment.iterdir() if p.is_dir() and version_number(p) is not None]
    return sorted(folders, key=version_number, reverse=True)


def newest_last(folder: Path) -> Path | None:
    """The run's last.ckpt: of a run's own folder (lightning_logs/X/version_N, or one with
    checkpoints/ in it), else of the newest run in an experiment's folder (lightning_logs/X)
    that has one."""
    for run in [folder, *run_folders(folder)]:
        last = run / "checkpoints" / LAST
        if last.exists():  # a file, or the folder of a sharded checkpoint
            return last
        if last.with_name(LAST + ".old").exists():  # a sharded save cut between its two renames (save_whole)
            return last.with_name(LAST + ".old")
    return None


def describe_missing(folder: Path) -> str:
    """Why a folder gives no last.ckpt: what is there instead."""
    runs = run_folders(folder)
    if runs:
        return f"none of the {len(runs)} runs in {folder}/ has checkpoints/{LAST} (they stopped before saving one)"
    if not folder.is_dir():
        return f"there are no runs in {folder}/ yet"
    experiments = sorted(p.name for p in folder.iterdir() if p.is_dir() and run_folders(p))
    if experiments:
        return f"{folder}/ holds no runs itself but folders of runs: {', '.join(experiments)}"
    files = sorted(islice(folder.rglob("*.ckpt"), 100))
    if files:
        return f"{folder}/ is no run folder (no checkpoints/{LAST}); give one of its checkpoints, e.g. {files[-1]}"
    return f"there are no runs in {folder}/ yet"


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint a path names, for everything that takes one (predict, serve, chat, the
    exports, the evaluations, model.init_from): a file, or a sharded checkpoint's folder, as it
    is; a run folder (lightning_logs/NAME, or its version_N) means its newest last.ckpt. A path
    that does not exist is returned as it is: opening it says so."""
    path = Path(path)
    if not path.is_dir() or is_sharded(path):
        return path
    last = newest_last(path)
    if last is None:
        raise FileNotFoundError(f"no checkpoint in {path}: {describe_missing(path)}")
    return last


def said_checkpoint(path: str | Path, option: str = "") -> Path:
    """resolve_checkpoint(path) for a command line: a run folder's checkpoint is named on stderr
    (after the option that gave the folder, e.g. "--ckpt_path ")."""
    resolved = resolve_checkpoint(path)
    if resolved != Path(path):
        print(f"{option}{path}: {resolved}", file=sys.stderr)
    return resolved


def check_checkpoint(path: str | Path) -> None:
    """Refuse a path that is not a whole checkpoint before torch.load reads it, with a plain
    message: a folder, another kind of file, a file cut short, or bytes changed since it
    was written (torch.save writes a zip archive; its CRC-32 checksums cover every byte).
    """
    path = Path(path)
    if path.is_dir():  # (load_checkpoint reads a run folder's last.ckpt, a sharded checkpoint's META)
        raise ValueError(f"{str(path)!r} is a folder, not a checkpoint: {describe_missing(path)}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; check the path")
    try:
        is_zip = zipfile.is_zipfile(path)
    except zipfile.BadZipFile:  # an end record that claims several disks, say: damaged
        is_zip = True  # ... and said so below, when the archive is opened
    if not is_zip:
        raise ValueError(
            f"{str(path)!r} is not a PyTorch checkpoint (no zip archive in it: another kind of file, "
            "or a checkpoint cut short while copying); check the path"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()  # reads every entry and checks its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"checkpoint {str(path)!r} is damaged ({e}); use another copy") from None
    if damaged is not None:
        raise ValueError(f"checkpoint {str(path)!r} is damaged: {damaged} fails its checksum; use another copy")
    if not any(name.endswith("/data.pkl") for name in names):
        raise ValueError(f"{str(path)!r} is a zip archive but not a PyTorch checkpoint; check the path")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, on the CPU: checked whole, read without running code from
    the file (weights_only: tensors and plain values only), its weights all finite. A run
    folder means its newest last.ckpt (resolve_checkpoint)."""
    path = resolve_checkpoint(path)
    if is_sharded(path):
        return {**load_checkpoint(Path(path) / META), SHARDED: str(path)}
    check_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names what it refused ("Unsupported global: GLOBAL builtins.eval"); its advice
        # to load with weights_only=False is exactly what must not be done with such a file.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)|Unsupported operand \d+", str(e))
        what = found.group(0) if found else type(e).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} holds more than tensors and plain values ({what}): loading it could run "
            "code, so it is refused. Checkpoints written by `main.py fit` never do; use one of those"
        ) from None
    except (RuntimeError, EOFError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {str(path)!r} could not be read ({first_line}); use another copy") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{str(path)!r} holds a {type(checkpoint).__name__}, not a checkpoint of `main.py fit`")
    check_finite(checkpoint, path)
    return checkpoint


def check_finite(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse weights (or optimizer moments) holding NaN or Inf: a model that diverged, or
    a file changed on disk; training or sampling from them would only spread the NaN."""

    def tensors(value: Any, name: str):
        if isinstance(value, torch.Tensor):
            yield name, value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from tensors(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from tensors(v, f"{name}.{i}")

    parts = {"state_dict": checkpoint.get("state_dict"), "optimizer_states": checkpoint.get("optimizer_states")}
    for name, tensor in tensors(parts, ""):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(
                f"checkpoint {str(path)!r} holds NaN or Inf in {name}: the run diverged before it was saved, or "
                "the file was changed; resume from an earlier checkpoint"
            )


def hyperparameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise ValueError("the checkpoint has no hyperparameters; was it written by this project's `main.py fit`?")
    return hparams


def model_config(checkpoint: dict[str, Any]) -> GPTConfig:
    """The GPTConfig the checkpoint's model was built with: its preset and the fields given
    beside it, and attention both ways for a masked model."""
    hparams = hyperparameters(checkpoint)
    given = {k: hparams[k] for k in FIELDS if k in hparams and k != "causal"}
    return GPTConfig(**given, causal=hparams.get("objective", "causal") != "masked")


def checkpoint_tokenizer(checkpoint: dict[str, Any]) -> Tokenizer | None:
    """The tokenizer saved with the model (None in a checkpoint without one), checked
    against the model's vocabulary."""
    if "tokenizer" not in checkpoint:
        return None
    tokenizer = tokenizer_from_state(checkpoint["tokenizer"])
    check_tokenizer_fits(tokenizer, checkpoint.get("hyper_parameters", {}).get("vocab_size"))
    return tokenizer


def check_tokenizer_fits(tokenizer: Tokenizer, vocab_size: int | None) -> None:
    if vocab_size is not None and tokenizer.vocab_size != vocab_size:
        raise ValueError(
            f"the checkpoint's tokenizer has {tokenizer.vocab_size} tokens but its model has vocab_size "
            f"{vocab_size}; the checkpoint is inconsistent: use the tokenizer the model was trained with"
        )


def is_sharded(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / META).is_file()


def refuse_sharded(checkpoint: dict[str, Any]) -> None:
    """A sharded checkpoint's weights are in its shards, which only FSDP reads: say how to join them."""
    if SHARDED in checkpoint:
        path = checkpoint[SHARDED]
        raise ValueError(
            f"checkpoint {path!r} is sharded (FSDP's state_dict_type sharded, a folder of shards): fit resumes from "
            "it under FSDP; to predict, export or start from it, join it into one file first: python -m "
            f"lightning.pytorch.utilities.consolidate_checkpoint {path}"
        )


def model_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's state_dict, as the plain torch model names its tensors."""
    refuse_sharded(checkpoint)
    state = checkpoint.get("state_dict", {})
    return {k.removeprefix(MODEL_PREFIX): v for k, v in state.items() if k.startswith(MODEL_PREFIX)}


def read_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer inside the checkpoint at path (predicting needs no corpus)."""
    tokenizer = checkpoint_tokenizer(load_checkpoint(path))
    if tokenizer is None:
        raise ValueError(f"checkpoint {str(path)!r} has no tokenizer; was it written by this project's `main.py fit`?")
    return tokenizer


def load_model(path: str | Path) -> tuple[LanguageModel, Tokenizer | None]:
    """The trained model of a checkpoint as a plain torch module in eval mode, and its tokenizer.
    A LoRA run's checkpoint comes back merged: a plain GPT (its base loaded first when the
    checkpoint holds the adapters alone)."""
    checkpoint = load_checkpoint(path)
    return model_of(checkpoint, path), checkpoint_tokenizer(checkpoint)


def load_chat_model(path: str | Path) -> tuple[LanguageModel, Tokenizer, str]:
    """A fine-tuned checkpoint's model, tokenizer and template name (alpaca or chat)."""
    checkpoint = load_checkpoint(path)
    if not checkpoint.get("template") or "tokenizer" not in checkpoint:
        raise ValueError(
            f"checkpoint {str(path)!r} was not fine-tuned on instructions (it has no template): to chat, "
            "fine-tune it first with data.instructions (docs/finetune.md), or continue text with predict"
        )
    return model_of(checkpoint, path), checkpoint_tokenizer(checkpoint), checkpoint["template"]


def model_of(checkpoint: dict[str, Any], path: str | Path) -> LanguageModel:
    """The checkpoint's model in eval mode (LoRA adapters merged)."""
    model = build_model(model_config(checkpoint))
    weights = model_weights(checkpoint)
    lora = hyperparameters(checkpoint).get("lora")
    if lora:
        base = checkpoint.get("lora_base")
        if base is not None:
            load_base(model, base, path)
        apply_lora(model, LoRASettings(**{**lora, "targets": tuple(lora["targets"])}))
        model.load_state_dict(weights, strict=base is None)
        merge_lora(model)
    else:
        model.load_state_dict(weights)
    return model.eval()


def load_base(model: LanguageModel, base: str, path: str | Path) -> None:
    """The base model under a checkpoint of LoRA adapters."""
    from gpt.interop.init import load_init

    runs = next((p.parent for p in Path(path).resolve().parents if p.name == "lightning_logs"), None)
    if not Path(base).exists() and runs is not None and (runs / base).exists():
        base = str(runs / base)  # a relative path, from the folder the run was started in
    if not Path(base).exists():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} holds LoRA adapters for the base model {base!r}, which does not exist "
            "(moved or deleted); put it back at that path"
        )
    load_init(model, base)  # the base has the adapters' vocabulary: LoRA never grows it


def run_checkpointing(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The state of the run's own checkpoint callback (its best checkpoint, the last validation
    loss): RunCheckpoint's (gpt/train/checkpointing.py), or in a checkpoint from before it, the
    ModelCheckpoint on val/loss. Not a user's own ModelCheckpoint, which may monitor nothing."""
    states = checkpoint.get("callbacks") or {}
    ours = [s for k, s in states.items() if k.startswith("RunCheckpoint")]
    before = [s for k, s in states.items() if k.startswith("ModelCheckpoint") and "'monitor': 'val/loss'" in k]
    return (ours or before or [{}])[0]


def best_checkpoint(last: Path) -> Path:
    """The checkpoint with the best validation loss of the run whose last.ckpt is `last`, as
    its checkpoint callback recorded it."""
    best = run_checkpointing(load_checkpoint(last)).get("best_model_path")
    if not best:
        raise FileNotFoundError(f"{last} records no best checkpoint (no validation ran before it was saved)")
    path = last.parent / Path(best).name  # the same folder, wherever the run was started from
    if not path.exists():
        raise FileNotFoundError(f"the best checkpoint recorded in {last}, {path}, is gone")
    return path
