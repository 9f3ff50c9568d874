"""Our GPT as one GGUF file for llama.cpp, Ollama and LM Studio: weights, tokenizer and chat
template together, written with the `gguf` package (llama.cpp's own writer of the format).

    python -m gpt.interop.gguf lightning_logs/.../last.ckpt out/model.gguf              # f32
    python -m gpt.interop.gguf lightning_logs/.../last.ckpt out/model.gguf --dtype q8_0  # a quarter of the bytes
    write_gguf(model, "out/model.gguf", tokenizer, dtype="f16", template="chat")

llama.cpp's gpt2 architecture is GPT-2: learned positions, LayerNorm, GELU (tanh), biases,
the LM head tied or not. Its tensors are ours renamed (blk.N.attn_qkv, ...: gguf's table for
GPT2) with the projections as nn.Linear stores them, (out, in): the Hugging Face layout
(gpt/interop/hf.py) transposed back, as llama.cpp's convert_hf_to_gguf.py does. A model
without biases gets zero ones, which compute the same; what the architecture cannot compute
(RoPE, SwiGLU, RMSNorm, ReLU, attention both ways, the teaching models) is refused by name.

--dtype as convert_hf_to_gguf.py: f16 and q8_0 store the 2-D weights (embeddings,
projections, LM head) that way, and the norms, biases and position embeddings in f32. q8_0
(gguf.quants): blocks of 32 weights, each one byte, with one f16 scale a block; a matrix
whose rows are not a multiple of 32 long stays f16. Plain torch and numpy, no Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import gguf
import numpy as np
import torch

from gpt.errors import exit_on_user_error
from gpt.files import atomic_path
from gpt.interop.checkpoint import checkpoint_tokenizer, load_checkpoint, model_of, said_checkpoint
from gpt.interop.gguf_tokenizer import add_tokenizer
from gpt.interop.hf import hf_state_dict, transpose_conv1d
from gpt.model.config import GPTConfig
from gpt.model.models import GPT
from gpt.tokenizers import Tokenizer

Dtype = Literal["f32", "f16", "q8_0"]
Q = gguf.GGMLQuantizationType
F = gguf.LlamaFileType
FILE_TYPES = {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "q8_0": F.MOSTLY_Q8_0}
MATRIX_TYPES = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0}
# What llama.cpp's gpt2 architecture computes; LLaMA's layout, which its llama architecture runs.
GPT2 = {"arch": "gpt", "pos": "learned", "mlp": "gelu", "norm": "layernorm", "causal": True}
LLAMA = {"pos": "rope", "mlp": "swiglu", "norm": "rmsnorm"}
NO_BIAS = ("wte.weight", "wpe.weight", "lm_head.weight")
# llama.cpp rounds every context up to a multiple of this many tokens.
CONTEXT_STEP = 256


def check_gpt2_arch(config: GPTConfig) -> None:
    """Refuse a model llama.cpp's gpt2 architecture would compute differently, naming the options."""
    different = {k: getattr(config, k) for k, v in GPT2.items() if getattr(config, k) != v}
    if not different:
        return
    settings = ", ".join(f"{k}={v}" for k, v in different.items())
    needs = ", ".join(f"{k}={v}" for k, v in GPT2.items())
    if config.arch != "gpt":
        hint = "the teaching models have no llama.cpp architecture"
    elif not config.causal:
        hint = "a masked language model (attention both ways) is not one that llama.cpp's text generators run"
    elif all(getattr(config, k) == v for k, v in LLAMA.items()) and not config.bias:
        hint = "this is LLaMA's layout, which llama.cpp's llama architecture runs (this exporter writes gpt2 only)"
    elif any(getattr(config, k) == v for k, v in LLAMA.items()):
        hint = "llama.cpp's llama architecture takes RoPE, SwiGLU and RMSNorm only all together, without biases"
    else:
        hint = "train with mlp=gelu to export (the gpt2 architecture's GELU is built into llama.cpp)"
    raise ValueError(f"llama.cpp's gpt2 architecture cannot run a model with {settings}: it needs {needs}; {hint}")


def context_length(config: GPTConfig) -> int:
    """The positions the file holds: block_size rounded up to llama.cpp's smallest context."""
    return -(-config.block_size // CONTEXT_STEP) * CONTEXT_STEP


def gguf_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under llama.cpp's gpt2 names, in nn.Linear's (out, in) layout, a
    zero bias wherever the model has none (bias=false, qkv_bias=false), and position
    embeddings for context_length positions: llama.cpp's context is a multiple of 256 tokens
    and it stops with an assertion failure at a position the file lacks, so the positions
    past block_size repeat the last one (ours slides a window of block_size tokens instead:
    the two agree up to block_size tokens)."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, model.config.n_layer)
    state = {name: transpose_conv1d(name, t) for name, t in hf_state_dict(model).items()}  # back to (out, in)
    wpe = state["wpe.weight"]
    state["wpe.weight"] = torch.cat([wpe, wpe[-1:].expand(context_length(model.config) - wpe.size(0), -1)])
    for name, tensor in list(state.items()):
        bias = name.removesuffix("weight") + "bias"
        if name.endswith(".weight") and name not in NO_BIAS and bias not in state:
            state[bias] = torch.zeros(tensor.size(0), dtype=tensor.dtype)
    return {names.get_name(k, try_suffixes=(".weight", ".bias")): v for k, v in state.items()}


def encode_tensor(name: str, tensor: torch.Tensor, dtype: Dtype) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The bytes llama.cpp reads and their type: matrices in dtype, everything else f32."""
    data = tensor.detach().cpu().float().numpy()
    matrix = data.ndim == 2 and name != "position_embd.weight"
    qtype = MATRIX_TYPES[dtype] if matrix else Q.F32
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.QuantError:  # rows not a whole number of q8_0's blocks of 32
        return gguf.quants.quantize(data, Q.F16), Q.F16


def write_gguf(
    model: GPT, path: str | Path, tokenizer: Tokenizer, dtype: Dtype = "f32", template: str | None = None
) -> Path:
    """Write the model, its tokenizer and (fine-tuned: alpaca or chat) its template as one GGUF
    file that llama.cpp loads with nothing else; atomically, after every check has passed."""
    config, path = model.config, Path(path)
    check_gpt2_arch(config)
    if dtype not in FILE_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(FILE_TYPES)}; got {dtype!r}")
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model {config.vocab_size}")
    if path.is_dir():
        raise ValueError(f"the output {str(path)!r} is a folder; give the name of a .gguf file in it")
    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2])
    writer.add_name(path.stem)
    writer.add_context_length(context_length(config))
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.mlp_hidden)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(1e-5)  # gpt/model/layers.py make_norm
    writer.add_file_type(FILE_TYPES[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_tokenizer(writer, tokenizer, template)
    for name, tensor in gguf_tensors(model).items():
        data, qtype = encode_tensor(name, tensor, dtype)
        writer.add_tensor(name, data, raw_dtype=qtype)
    with atomic_path(path) as tmp:
        try:
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return path


def export_gguf(ckpt_path: str, out: str, dtype: Dtype = "f32") -> None:
    """Export a checkpoint that `python main.py fit` wrote (a LoRA run's merged) as a GGUF
    file for llama.cpp, Ollama and LM Studio, its tokenizer and chat template inside.

    Args:
        ckpt_path: A Lightning checkpoint of LitGPT (e.g. lightning_logs/.../last.ckpt), or a
            run folder (lightning_logs/NAME: its newest last.ckpt).
        out: The .gguf file to write.
        dtype: How the weight matrices are stored: f32 (exact), f16 (half the bytes), or q8_0
            (8-bit blocks with a scale each: about a quarter).
    """
    ckpt_path = str(said_checkpoint(ckpt_path))
    checkpoint = load_checkpoint(ckpt_path)
    model, tokenizer = model_of(checkpoint, ckpt_path), checkpoint_tokenizer(checkpoint)
    if tokenizer is None:
        raise ValueError(f"checkpoint {ckpt_path!r} has no tokenizer, which a GGUF file carries; export one that has")
    template = checkpoint.get("template")
    write_gguf(model, out, tokenizer, dtype, template)
    size = Path(out).stat().st_size
    size_text = f"{size / 2**20:,.1f} MiB" if size >= 2**20 else f"{size / 2**10:,.1f} KiB"
    chat = f", chat template {template!r}" if template else ""
    context = context_length(model.config)
    print(f"wrote {out} ({size_text}, {dtype}, llama.cpp architecture gpt2, context {context} tokens{chat})")


if __name__ == "__main__":
    from jsonargparse import auto_cli

    exit_on_user_error(lambda: auto_cli(export_gguf))
