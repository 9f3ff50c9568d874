"""Tokenizers on Tiny Shakespeare: BPE training time, characters per token, encoding speed.

    python benchmarks/tokenizer_speed.py [--corpus PATH] [--repeats 5]

Our BPE trains on the training split (the first 90% of the text) at vocab sizes 512,
1024 and 4096 (GPT-4 pre-split). Characters per token are measured on the validation
split (the last 10%, never seen by the BPE trainer) and on the whole text. Encoding speed
is MB/s over the whole text, single-threaded (`encode_ordinary`) and with tiktoken's
thread pool over 256k-character blocks (`encode_ordinary_batch`, as the data module does); each
figure is the best of `repeats` runs. tiktoken's encodings need TIKTOKEN_CACHE_DIR
offline; `gpt2` is loaded from `r50k_base` (the same ids).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from gpt.data.corpus import read_blocks
from gpt.tokenizers import BPETokenizer, CharTokenizer, TiktokenTokenizer
from gpt.tokenizers.bpe import bpe_encode_reference

ROOT = Path(__file__).resolve().parents[1]


def find_corpus() -> Path:
    for c in (
        os.environ.get("TINY_SHAKESPEARE", ""),
        ROOT / "data/tinyshakespeare/input.txt",
        ROOT.parent / "shared/data/tinyshakespeare/input.txt",
    ):
        if c and Path(c).is_file():
            return Path(c)
    raise SystemExit("Tiny Shakespeare not found: pass --corpus PATH or set TINY_SHAKESPEARE")


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = args.corpus or find_corpus()
    text = path.read_text(encoding="utf-8")
    n_train = int(len(text) * 0.9)
    train, val = text[:n_train], text[n_train:]
    mb = len(text.encode("utf-8")) / 1e6
    blocks = list(read_blocks(path, 1 << 18))
    print(f"corpus: {path} ({mb:.2f} MB, {len(blocks)} blocks); {os.cpu_count()} CPUs\n")

    tokenizers = {"char": CharTokenizer.from_text(text)}
    print("| BPE vocab | training time (best of 3) | merges |")
    print("| --- | --- | --- |")
    for vocab_size in (512, 1024, 4096):
        tok = BPETokenizer.train([train], vocab_size)  # warm-up, and the tokenizer we keep
        seconds = best_time(lambda: BPETokenizer.train([train], vocab_size), 3)
        print(f"| {vocab_size} | {seconds:.2f} s | {len(tok.merges)} |")
        tokenizers[f"bpe-{vocab_size}"] = tok
    tokenizers["gpt2"] = TiktokenTokenizer("gpt2")
    try:
        tokenizers["cl100k_base"] = TiktokenTokenizer("cl100k_base")
    except ValueError as e:
        print(f"(cl100k_base skipped: {e})")

    print(
        "\n| tokenizer | vocab | chars/token (val) | chars/token (all) | encode MB/s (1 thread) | encode MB/s (batch) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, tok in tokenizers.items():
        cpt_val = len(val) / len(tok.encode(val))
        cpt_all = len(text) / len(tok.encode(text))
        single = mb / best_time(lambda: tok.encode(text), args.repeats)
        batch = mb / best_time(lambda: tok.encode_batch(blocks), args.repeats)
        print(f"| {name} | {tok.vocab_size:,} | {cpt_val:.3f} | {cpt_all:.3f} | {single:.1f} | {batch:.1f} |")

    tok = tokenizers["bpe-4096"]
    seconds = best_time(lambda: bpe_encode_reference(text, tok.merges, tok.pattern), 1)
    print(
        f"\nreference Python encoder, bpe-4096: {mb / seconds:.2f} MB/s "
        f"(same ids as tiktoken: {bpe_encode_reference(text, tok.merges, tok.pattern) == tok.encode(text)})"
    )


if __name__ == "__main__":
    main()
