"""Hugging Face GPT-2 checkpoints in and out of our GPT, weight for weight.

    model = from_hf("checkpoints/gpt2")             # a folder from the Hub, or a .safetensors file
    load_hf(model, "checkpoints/gpt2")              # into a model you built, shapes checked
    save_hf(model, "out/my-gpt")                    # GPT2LMHeadModel.from_pretrained("out/my-gpt")
    python -m gpt.interop.hf lightning_logs/.../last.ckpt out/my-gpt   # export a checkpoint and its tokenizer

Hugging Face's GPT-2 has the same modules under the same names as ours (nanoGPT chose
them so), with two differences: its four projection matrices are Conv1D weights stored
(in, out), the transpose of nn.Linear's (out, in); and a tied LM head is not saved.
Reading needs `safetensors` (or torch, for pytorch_model.bin), not `transformers`. The
tokenizer is written by gpt.interop.hf_tokenizer, for AutoTokenizer.from_pretrained.
Plain torch, no Lightning.
"""

from __future__ import annotations

import json
from collections.abc import Set as AbstractSet
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from gpt.data.templates import JINJA, TEMPLATES
from gpt.errors import exit_on_user_error
from gpt.files import write_bytes, write_text
from gpt.interop.checkpoint import checkpoint_tokenizer, load_checkpoint, model_of, said_checkpoint
from gpt.interop.hf_tokenizer import save_hf_tokenizer
from gpt.model.config import GPTConfig
from gpt.model.models import GPT, grown_rows
from gpt.tokenizers import PAD, Tokenizer

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal masks that older files saved; not weights
PREFIX = "transformer."  # GPT2LMHeadModel's files have it; GPT2Model's (the Hub's gpt2) do not
VOCAB_ROWS = ("wte.weight", "lm_head.weight")  # a row per token: a padded model has more than vocab_size


# ---- reading a checkpoint


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The tensors, in Hugging Face's layout, and config.json when there is one.

    path: a folder with model.safetensors, model.safetensors.index.json (shards) or
    pytorch_model.bin, and usually config.json; or a .safetensors / .bin file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no Hugging Face checkpoint at {path}")
    folder = path if path.is_dir() else path.parent
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else None
    if path.is_dir():
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise FileNotFoundError(
                f"{folder} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin"
            )
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state = {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    elif path.suffix == ".safetensors":
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from the file
    state = {k.removeprefix(PREFIX): v for k, v in state.items() if not k.endswith(BUFFERS)}
    return state, config


def config_from_hf(hf: dict[str, Any]) -> GPTConfig:
    """Our GPTConfig for a Hugging Face GPT-2 config.json, refusing what our GPT does not do."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"config.json describes a {hf['model_type']!r} model; only GPT-2 checkpoints load")
    unsupported = {
        "activation_function": (hf.get("activation_function", "gelu_new"), ("gelu_new", "gelu_pytorch_tanh")),
        "n_inner": (hf.get("n_inner"), (None, 4 * hf["n_embd"])),
        "layer_norm_epsilon": (hf.get("layer_norm_epsilon", 1e-5), (1e-5,)),
        "scale_attn_weights": (hf.get("scale_attn_weights", True), (True,)),
        "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False), (False,)),
    }
    for key, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise ValueError(f"config.json has {key}={value!r}; our GPT supports {' or '.join(map(repr, allowed))}")
    return GPTConfig(
        vocab_size=hf["vocab_size"],
        block_size=hf["n_positions"],
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=hf["n_embd"],
        dropout=0.0,
        tie_weights=hf.get("tie_word_embeddings", True),
    )


def check_gpt2_layout(config: GPTConfig) -> None:
    """Hugging Face's GPT-2 is causal, with learned positions, GELU, LayerNorm and biases everywhere."""
    gpt2 = {"arch": "gpt", "pos": "learned", "mlp": "gelu", "norm": "layernorm", "bias": True, "attn_bias": True}
    gpt2["causal"] = True
    different = {k: getattr(config, k) for k, v in gpt2.items() if getattr(config, k) != v}
    if different:
        settings = ", ".join(f"{k}={v}" for k, v in different.items())
        raise ValueError(f"Hugging Face's GPT-2 layout cannot hold a model with {settings}; it needs {gpt2}")


# ---- into our GPT


def load_hf(model: GPT, path: str | Path, new_ids: AbstractSet[int] = frozenset()) -> int:
    """Copy a Hugging Face GPT-2 checkpoint's weights into model, checking every shape; the
    number of token rows the model has beyond the checkpoint's (its new special tokens).

    A model with a shorter block_size keeps the checkpoint's first block_size position
    embeddings (as nanoGPT's crop_block_size); a vocabulary larger by new_ids (special tokens
    added for fine-tuning) starts them at the mean embedding; anything else that does not fit
    is refused, naming the first tensor that does not.
    """
    config = model.config
    check_gpt2_layout(config)
    state, hf_config = read_checkpoint(path)
    if hf_config is not None:
        theirs = config_from_hf(hf_config)
        if theirs.n_head != config.n_head:  # the one size the tensor shapes do not show
            raise ValueError(
                f"the checkpoint's config.json has n_head {theirs.n_head} but the model has {config.n_head}"
            )
    if "wpe.weight" in state and state["wpe.weight"].size(0) > config.block_size:
        state["wpe.weight"] = state["wpe.weight"][: config.block_size]
    if (
        "lm_head.weight" in state
        and config.tie_weights
        and not torch.equal(state["lm_head.weight"], state.get("wte.weight"))
    ):
        raise ValueError(
            "the checkpoint's lm_head.weight differs from its wte.weight: set tie_weights false to load it"
        )
    if not config.tie_weights and "lm_head.weight" not in state:
        state["lm_head.weight"] = state.get("wte.weight")  # a tied checkpoint into an untied model: start tied
    known = state["wte.weight"].size(0) if "wte.weight" in state else config.vocab_size
    if known < config.vocab_size and set(range(known, config.vocab_size)) <= set(new_ids):
        for name in VOCAB_ROWS:
            if name in state:
                state[name] = grown_rows(state[name], known, config.vocab_size)
    expected = hf_state_dict(model)
    for name, tensor in expected.items():
        if name not in state or state[name] is None:
            raise ValueError(f"the checkpoint has no {name}, which the model needs ({describe_sizes(config)})")
        if state[name].shape != tensor.shape:
            raise ValueError(
                f"the checkpoint's {name} has shape {tuple(state[name].shape)} but the model needs "
                f"{tuple(tensor.shape)} ({describe_sizes(config)}; Conv1D weights are stored (in, out))"
            )
    extra = sorted(set(state) - set(expected) - {"lm_head.weight"})
    if extra:
        raise ValueError(f"the checkpoint has {extra[0]}, which the model lacks ({describe_sizes(config)})")
    ours = {with_prefix(name): transpose_conv1d(name, state[name]) for name in expected}
    own = model.state_dict()
    for name in map(with_prefix, VOCAB_ROWS):  # a padded model keeps its own padding rows (never scored)
        if name in ours and own[name].size(0) > config.vocab_size:
            ours[name] = torch.cat([ours[name].to(own[name].dtype), own[name][config.vocab_size :]])
    model.load_state_dict(ours, strict=False)  # tied: lm_head.weight is wte.weight
    return max(config.vocab_size - known, 0)


def from_hf(path: str | Path, **overrides) -> GPT:
    """A GPT built from a checkpoint's config.json (fields replaced by overrides), loaded."""
    _, hf_config = read_checkpoint(path)
    if hf_config is None:
        raise FileNotFoundError(f"no config.json beside {path}: build the GPT yourself and use load_hf")
    model = GPT(replace(config_from_hf(hf_config), **overrides))
    load_hf(model, path)
    return model


def describe_sizes(config: GPTConfig) -> str:
    return (
        f"vocab_size {config.vocab_size}, block_size {config.block_size}, n_layer {config.n_layer}, "
        f"n_embd {config.n_embd}"
    )


# ---- out of our GPT


def with_prefix(name: str) -> str:
    """The name in GPT2LMHeadModel's files, which is also our GPT's: "transformer." before
    every tensor but the LM head."""
    return name if name == "lm_head.weight" else PREFIX + name


def transpose_conv1d(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Hugging Face's Conv1D weights are stored (in, out), nn.Linear's (out, in): transpose
    the four projection matrices, either way (a transpose is its own inverse)."""
    return tensor.t() if name.endswith(CONV1D) else tensor


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights named and shaped as in a GPT2LMHeadModel file (without the
    "transformer." prefix); a tied LM head is left out, as Hugging Face saves it, and a
    padded vocabulary's extra rows too."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_weights:
            continue
        hf_name = name.removeprefix(PREFIX)
        if hf_name in VOCAB_ROWS:
            tensor = tensor[: model.config.vocab_size]
        out[hf_name] = transpose_conv1d(hf_name, tensor)
    return out


def hf_config(config: GPTConfig, eos_token_id: int | None = None, pad_token_id: int | None = None) -> dict[str, Any]:
    """config.json for GPT2LMHeadModel; <|endoftext|> begins and ends a text, as in GPT-2."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "tie_word_embeddings": config.tie_weights,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }


def save_hf(
    model: GPT,
    out_dir: str | Path,
    eos_token_id: int | None = None,
    tokenizer: Tokenizer | None = None,
    template: str | None = None,
) -> Path:
    """Write model.safetensors and config.json that GPT2LMHeadModel.from_pretrained reads,
    and with a tokenizer its files for AutoTokenizer (and its special ids in config.json),
    each atomically. A fine-tuned model's template (alpaca or chat) becomes the tokenizer's
    chat_template, and generate stops at its end-of-turn token (generation_config.json)."""
    check_gpt2_layout(model.config)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output folder {str(out_dir)!r} is a file; give the name of a folder")
    pad_token_id = None
    if tokenizer is not None:
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model {model.config.vocab_size}")
        eos_token_id, pad_token_id = tokenizer.eot_id, tokenizer.special_tokens.get(PAD)
    tensors = {with_prefix(k): v.detach().cpu().contiguous() for k, v in hf_state_dict(model).items()}
    write_bytes(out_dir / "model.safetensors", safetensors_bytes(tensors, metadata={"format": "pt"}))
    config = hf_config(model.config, eos_token_id, pad_token_id)
    write_text(out_dir / "config.json", json.dumps(config, indent=2) + "\n")
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, out_dir, model.config.block_size, JINJA.get(template))
    if tokenizer is not None and template is not None:
        ends = [tokenizer.special_tokens[TEMPLATES[template].stop_token], tokenizer.eot_id]
        generation = {"bos_token_id": tokenizer.eot_id, "eos_token_id": list(dict.fromkeys(ends))}
        write_text(out_dir / "generation_config.json", json.dumps(generation, indent=2) + "\n")
    return out_dir


def export_checkpoint(ckpt_path: str, out_dir: str) -> None:
    """Export a checkpoint that `python main.py fit` wrote to Hugging Face's GPT-2 layout.

    Args:
        ckpt_path: A checkpoint of main.py fit (e.g. lightning_logs/.../last.ckpt), or a run
            folder (lightning_logs/NAME: its newest last.ckpt).
        out_dir: Folder for model.safetensors, config.json and the tokenizer's files.
    """
    ckpt_path = str(said_checkpoint(ckpt_path))
    checkpoint = load_checkpoint(ckpt_path)
    model, tokenizer = model_of(checkpoint, ckpt_path), checkpoint_tokenizer(checkpoint)
    if not isinstance(model, GPT):
        raise ValueError(f"{ckpt_path!r} holds a teaching model (arch {model.config.arch!r}); only arch gpt exports")
    if not model.config.causal:
        raise ValueError(
            f"{ckpt_path!r} is a masked language model (attention both ways); Hugging Face's GPT-2 attends to "
            "earlier tokens only, so it would compute something else: only causal checkpoints export"
        )
    save_hf(model, out_dir, tokenizer=tokenizer, template=checkpoint.get("template"))
    written = "config.json" if tokenizer is None else "config.json and tokenizer.json"
    n = sum(t.numel() for t in hf_state_dict(model).values())  # as written: no padding rows
    print(f"wrote {out_dir}/model.safetensors, {written} ({n:,} parameters)")


if __name__ == "__main__":
    from jsonargparse import auto_cli

    exit_on_user_error(lambda: auto_cli(export_checkpoint, allow_abbrev=False))
