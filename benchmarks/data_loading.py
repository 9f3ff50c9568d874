"""Reading training batches from shards of token ids: our memmapped shards against litdata.

    python benchmarks/data_loading.py [--shards DIR] [--tokens 30000000] [--shard-tokens 5000000]
        [--batch-size 16] [--block-size 1024] [--batches 500] [--warmup 20] [--workers 0 2]
        [--repeats 3] [--folder DIR] [--corpus PATH (default: $TINY_SHAKESPEARE)]

The token stream is a folder of write_shards shards (--shards, e.g. one that fit tokenized), or
one built here: synthetic documents of Tiny Shakespeare paragraphs drawn with a seed (about
3 kB each), tokenized with tiktoken gpt2 by gpt.data.shards.write_shards into uint16 shards of
--shard-tokens ids. Both loaders read its training shards, as windows of block_size + 1 ids:

    memmap      gpt.data.datasets.TrainWindows over the np.memmap shards (stride block_size, as fit uses
                for shards) + ResumableSampler + torch DataLoader: what GPTDataModule trains on
    litdata     the same ids converted once by litdata.optimize(..., item_loader=TokensLoader()) into
                its chunk format (uint16 numpy items, one a document, as litgpt's data preparation
                yields them; chunks of --shard-tokens ids), read by StreamingDataset(item_loader=
                TokensLoader(block_size + 1), shuffle=True, drop_last=True) + StreamingDataLoader

Each loader makes x = window[:-1], y = window[1:] as int64 (ours in its dataset, litdata's after
collate, timed with it). A run skips --warmup batches (worker start-up, first page faults),
then times --batches batches; runs alternate between the loaders, so that a busy spell of a
shared machine hits them all, and each reports its best of --repeats. The time to the first
batch (iterator and workers starting) is reported apart. Nothing else runs in the loop: this
is the most the loader can feed, not a training step.

litdata is not a project dependency. Its wheel requires torchvision, which pulls a CUDA torch
in place of the CPU one; to measure it without that, install it beside the project's torch:
`pip install --no-deps litdata && pip install boto3` (torchvision, tifffile and obstore are
imported only for images, TIFFs and cloud storage), and uninstall them afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.data.datasets import ResumableSampler, TrainWindows, split_examples  # noqa: E402
from gpt.data.shards import open_shards, read_manifest, write_shards  # noqa: E402
from gpt.tokenizers import TiktokenTokenizer  # noqa: E402

BYTES_PER_TOKEN = 3.3  # gpt2 on Tiny Shakespeare: how much text a token of the target takes


from tokenizer_speed import find_corpus  # noqa: E402  (one place that looks for Tiny Shakespeare)


def build_shards(folder: Path, source: Path, tokens: int, shard_tokens: int, seed: int = 0) -> Path:
    """Shards of synthetic documents (1-39 Shakespeare paragraphs each), about `tokens` ids."""
    paragraphs = split_examples(source.read_text(encoding="utf-8"), "paragraphs")
    rng = random.Random(seed)
    docs, size = [], 0
    while size < tokens * BYTES_PER_TOKEN:
        docs.append("\n".join(rng.choices(paragraphs, k=rng.randint(1, 39))))
        size += len(docs[-1])
    start = time.perf_counter()
    write_shards(lambda skip: iter(docs[skip:]), TiktokenTokenizer("gpt2"), folder, shard_tokens, workers=2)
    print(f"wrote {folder} ({size / 1e6:.0f} MB of text) in {time.perf_counter() - start:.1f} s", flush=True)
    return folder


# ---- our loader


def memmap_loader(shards: Path, batch_size: int, block_size: int, workers: int, seed: int = 1337) -> DataLoader:
    """What GPTDataModule.train_dataloader builds for a corpus of documents."""
    dataset = TrainWindows(open_shards(shards, "train"), block_size, stride=block_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableSampler(len(dataset), seed),
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def memmap_batches(loader: DataLoader):
    yield from loader  # (x, y), int64, from the dataset


# ---- litdata


def documents_of_shard(path: str, eot: int):
    """A shard's ids as documents, each starting at its <|endoftext|> (the form litgpt's
    preparation yields: one token array a document)."""
    ids = np.fromfile(path, dtype=np.uint16)
    starts = np.flatnonzero(ids == eot)
    yield from np.split(ids, starts[1:] if len(starts) and starts[0] == 0 else starts)


def litdata_optimize(shards: Path, out: Path, shard_tokens: int, workers: int) -> float:
    """Convert the training shards into litdata chunks; the seconds it took."""
    from functools import partial

    import litdata

    manifest = read_manifest(shards)
    files = [str(shards / s["file"]) for s in manifest["shards"] if s["split"] == "train"]
    shutil.rmtree(out, ignore_errors=True)
    for name in ("DATA_OPTIMIZER_CACHE_FOLDER", "DATA_OPTIMIZER_DATA_CACHE_FOLDER"):  # not /tmp/chunks, /tmp/data
        os.environ[name] = str(out.parent / "litdata_cache" / name.lower())
    start = time.perf_counter()
    litdata.optimize(
        fn=partial(documents_of_shard, eot=TiktokenTokenizer("gpt2").eot_id),
        inputs=files,
        output_dir=str(out),
        chunk_bytes=shard_tokens * 2,
        num_workers=workers,
        item_loader=litdata.TokensLoader(),
        reorder_files=False,
        verbose=False,
    )
    return time.perf_counter() - start


def litdata_loader(chunks: Path, batch_size: int, block_size: int, workers: int, seed: int = 1337):
    """As litgpt's pretraining data modules build it."""
    from litdata import StreamingDataLoader, StreamingDataset, TokensLoader

    dataset = StreamingDataset(
        input_dir=str(chunks),
        item_loader=TokensLoader(block_size=block_size + 1),
        shuffle=True,
        drop_last=True,
        seed=seed,
    )
    return StreamingDataLoader(
        dataset,
        batch_size=batch_size,
        pin_memory=torch.cuda.is_available(),
        num_workers=workers,
        drop_last=True,
    )


def litdata_batches(loader):
    for batch in loader:
        batch = batch.to(torch.int64)
        yield batch[:, :-1], batch[:, 1:]


# ---- timing


def time_loader(make, batches_of, warmup: int, n: int, block_size: int) -> tuple[float, float]:
    """(seconds to the first batch, seconds for n batches after warmup)."""
    loader = make()
    start = time.perf_counter()
    it = batches_of(loader)
    x, y = next(it)
    first = time.perf_counter() - start
    assert x.shape[1] == block_size and x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])
    for _ in range(warmup - 1):
        next(it)
    start = time.perf_counter()
    for _ in range(n):
        x, y = next(it)
    seconds = time.perf_counter() - start
    del it, loader  # stops the workers
    return first, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, default=None, help="a write_shards folder; default: build one")
    parser.add_argument("--tokens", type=int, default=30_000_000, help="ids of the shards built here")
    parser.add_argument("--shard-tokens", type=int, default=5_000_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None, help="work folder (kept); default: a temp")
    parser.add_argument("--corpus", type=Path, default=None, help="Tiny Shakespeare")
    args = parser.parse_args()
    B, T = args.batch_size, args.block_size

    folder = args.folder or Path(tempfile.mkdtemp(prefix="data_loading_"))
    try:
        shards = args.shards or build_shards(
            folder / "shards", args.corpus or find_corpus(), args.tokens, args.shard_tokens
        )
        train = open_shards(shards, "train")
        n_train = sum(len(s) for s in train)
        print(
            f"shards: {shards} ({len(train)} training shards, {n_train:,} ids, uint16); batches of {B} x {T} "
            f"(+1); {args.warmup} warm-up + {args.batches} timed batches, best of {args.repeats}; "
            f"{os.cpu_count()} CPUs; torch {torch.__version__}",
            flush=True,
        )
        methods = {
            f"memmap workers={w}": (lambda w=w: memmap_loader(shards, B, T, w), memmap_batches) for w in args.workers
        }
        try:
            import litdata

            chunks = folder / "litdata"
            seconds = litdata_optimize(shards, chunks, args.shard_tokens, workers=max(args.workers))
            n_chunks = len(list(chunks.glob("*.bin")))
            windows = len(litdata_loader(chunks, B, T, 0).dataset)
            print(
                f"litdata {litdata.__version__}: optimize wrote {n_chunks} chunks "
                f"({sum(p.stat().st_size for p in chunks.glob('*.bin')) / 1e6:.0f} MB) in {seconds:.1f} s; "
                f"windows an epoch: litdata {windows:,}, memmap {len(TrainWindows(train, T, T)):,}",
                flush=True,
            )
            for w in args.workers:
                methods[f"litdata workers={w}"] = (lambda w=w: litdata_loader(chunks, B, T, w), litdata_batches)
        except Exception as e:  # not installed, or failing: measure ours alone
            print(f"litdata not measured: {type(e).__name__}: {e}", flush=True)

        best = {name: (float("inf"), float("inf")) for name in methods}
        for repeat in range(args.repeats):
            for name, (make, batches_of) in methods.items():
                first, seconds = time_loader(make, batches_of, args.warmup, args.batches, T)
                best[name] = (min(best[name][0], first), min(best[name][1], seconds))
                print(f"  repeat {repeat + 1}, {name}: {args.batches / seconds:,.0f} batches/s", flush=True)

        base = args.batches / best[f"memmap workers={args.workers[0]}"][1]
        print(f"\n| loader | batches/s | tokens/s | x memmap workers={args.workers[0]} | first batch |")
        print("| --- | --- | --- | --- | --- |")
        for name, (first, seconds) in best.items():
            rate = args.batches / seconds
            print(f"| {name} | {rate:,.0f} | {rate * B * T / 1e6:,.1f} M | {rate / base:.2f} | {first:.2f} s |")
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
