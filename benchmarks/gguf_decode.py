"""GGUF files in llama.cpp against our own decoding, side by side in one run: the file's size per
--dtype (f32, f16, q8_0), greedy decoding tokens/s at batch 1 in llama.cpp (through
llama-cpp-python) and in our generate (fp32, KV cache), on the same threads, and how many of
llama.cpp's greedy ids are ours.

    python benchmarks/gguf_decode.py                                # GPT-2 small (124M), random weights
    python benchmarks/gguf_decode.py --ckpt CKPT                    # a trained checkpoint and its tokenizer
    python benchmarks/gguf_decode.py --preset baby --new_tokens 20  # a quick look

Needs llama-cpp-python (docs/gguf.md says how to build it). Its generate loop runs in Python: a
few tens of microseconds a token on top of llama.cpp's own, which matters only for tiny models.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt.interop.checkpoint import checkpoint_tokenizer, load_checkpoint, model_of  # noqa: E402
from gpt.interop.gguf import write_gguf  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.generation import generate  # noqa: E402
from gpt.model.models import GPT  # noqa: E402
from gpt.tokenizers import TiktokenTokenizer  # noqa: E402

DTYPES = ("f32", "f16", "q8_0")


def best_of(fn, repeats: int) -> tuple[list[int], float]:
    """fn's result and its fastest time, after one run to warm up."""
    out, best = fn(), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def llama_greedy(llm, prompt: list[int], n: int) -> list[int]:
    """n greedy ids after prompt (llama.cpp's prefill of the prompt included, as in ours)."""
    return [token for token, _ in zip(llm.generate(prompt, temp=0.0, repeat_penalty=1.0, reset=True), range(n))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt2", help="random weights of this size, GPT-2's tokenizer")
    parser.add_argument("--ckpt", default=None, help="a trained checkpoint instead (its own tokenizer)")
    parser.add_argument("--new_tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="for both (torch and llama.cpp)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import llama_cpp  # only here: --help answers without it

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.ckpt:
        checkpoint = load_checkpoint(args.ckpt)
        model, tokenizer = model_of(checkpoint, args.ckpt), checkpoint_tokenizer(checkpoint)
    else:
        tokenizer = TiktokenTokenizer("gpt2")
        model = GPT(GPTConfig(preset=args.preset, vocab_size=tokenizer.vocab_size, dropout=0.0)).eval()
    prompt = tokenizer.encode("First Citizen:\nBefore we proceed any further")[:8]
    new = min(args.new_tokens, model.config.block_size - len(prompt))  # llama.cpp stops past the positions
    with torch.inference_mode():
        ours, seconds = best_of(
            lambda: generate(model, torch.tensor([prompt]), new, temperature=0)[0, len(prompt) :].tolist(), args.repeats
        )
    rows = [("ours (torch fp32, KV cache)", None, new / seconds, 1.0)]
    with tempfile.TemporaryDirectory() as folder:
        for dtype in DTYPES:
            path = write_gguf(model, Path(folder) / f"model-{dtype}.gguf", tokenizer, dtype)
            llm = llama_cpp.Llama(
                str(path), n_ctx=model.config.block_size, n_threads=args.threads, n_threads_batch=args.threads,
                verbose=False,
            )  # fmt: skip
            theirs, seconds = best_of(lambda llm=llm: llama_greedy(llm, prompt, new), args.repeats)
            same = sum(a == b for a, b in zip(theirs, ours)) / new
            rows.append((f"llama.cpp {dtype}", path.stat().st_size / 2**20, new / seconds, same))
            llm.close()
    what = args.ckpt or f"{args.preset}, random weights"
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{what}: {params / 1e6:.1f}M parameters, greedy, {new} new tokens after {len(prompt)}, batch 1, "
        f"{args.threads} threads, best of {args.repeats}"
    )
    print("| decoder | file MiB | tok/s | x ours | greedy ids equal to ours |")
    print("| --- | --- | --- | --- | --- |")
    for name, size, speed, same in rows:
        file = "" if size is None else f"{size:,.1f}"
        print(f"| {name} | {file} | {speed:,.0f} | {speed / rows[0][2]:.2f} | {same:.0%} |")


if __name__ == "__main__":
    main()
