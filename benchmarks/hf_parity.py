"""Logit parity with transformers' GPT-2 at full GPT-2 small size (random weights, no download).

    python benchmarks/hf_parity.py [--preset gpt2] [--batch 2] [--seq_len 1024]

Builds a GPT2LMHeadModel with random weights (biases and LayerNorms randomised too), loads
it into our GPT (gpt.interop.hf.from_hf), exports ours back (gpt.interop.hf.save_hf) and reads it with
GPT2LMHeadModel.from_pretrained; prints the largest logit difference each way, in fp32.
The tests assert the same at a tiny size; this shows it holds at the published shape.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt.interop.hf import from_hf, hf_config, save_hf  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq_len", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        **{k: v for k, v in hf_config(GPTConfig(preset=args.preset)).items() if k != "architectures"}
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.02 if p.dim() > 1 else 0.1)
    idx = torch.randint(0, config.vocab_size, (args.batch, args.seq_len))
    with tempfile.TemporaryDirectory() as theirs, tempfile.TemporaryDirectory() as mine, torch.no_grad():
        hf.save_pretrained(theirs)
        ours = from_hf(theirs).eval()
        expected = hf(idx).logits
        logits = ours(idx)
        save_hf(ours, mine)
        back = transformers.GPT2LMHeadModel.from_pretrained(mine).eval()(idx).logits
    print(f"{args.preset}: {ours.num_params():,} parameters, {args.batch} x {args.seq_len} tokens, fp32")
    print(f"  Hugging Face -> ours: max |logit difference| = {(logits - expected).abs().max().item():.2e}")
    print(f"  ours -> Hugging Face: max |logit difference| = {(back - logits).abs().max().item():.2e}")
    print(f"  (logits: std {expected.std().item():.3f}, max |logit| {expected.abs().max().item():.3f})")


if __name__ == "__main__":
    main()
