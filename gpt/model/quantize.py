"""int8 weights for decoding on a CPU: fewer bytes to read per token.

Decoding one token at batch 1 reads every weight once, so in fp32 it is bound by memory
bandwidth (benchmarks/decode_vs_hf.py prints that floor). Dynamic quantization stores each
Linear's weight in int8 (a scale per tensor) and quantizes the activations on the fly, a
quarter of the bytes: torch's `quantize_dynamic` on the CPU; torchao's weight-only int8 where
it is installed (`benchmarks/int8_decode.py` measures both). Embeddings stay in float.

Plain torch, no Lightning.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn


def int8_weights(model: nn.Module) -> nn.Module:
    """A copy of the model (for inference only) with every Linear's weights in int8."""
    if next(model.parameters()).device.type != "cpu":  # its int8 kernels are CPU ones
        raise ValueError("int8 weights (torch's dynamic quantization) run on the CPU; leave --int8 out on a GPU")
    with warnings.catch_warnings():  # torch marks its quantized tensors for removal in favour of torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8)
