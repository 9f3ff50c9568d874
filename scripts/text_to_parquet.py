"""Turn a text file into a folder of parquet files of documents: the form big corpora come in
(FineWeb, OpenWebText on the hub), made from a small one so that the whole sharded pipeline
runs on a laptop.

    python scripts/text_to_parquet.py shakespeare data/shakespeare_parquet
    python main.py fit --config configs/parquet_cpu.yaml

Documents are the blocks between blank lines (a speech of Tiny Shakespeare), in order, split
over --files files with one column, `text`. "shakespeare" is Tiny Shakespeare (downloaded
into --data_dir when missing). Each file is written atomically.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

from gpt.data.corpus import Corpus  # noqa: E402
from gpt.files import atomic_write  # noqa: E402


def documents(text: str) -> list[str]:
    """The blocks between blank lines, each ending in one newline."""
    return [p.strip("\n") + "\n" for p in re.split(r"\n\s*\n", text) if p.strip()]


def write_parquet(docs: list[str], folder: Path, files: int) -> list[Path]:
    paths = []
    for i in range(files):
        part = docs[i * len(docs) // files : (i + 1) * len(docs) // files]
        path = folder / f"part-{i:05d}.parquet"
        with atomic_write(path) as f:
            pq.write_table(pa.table({"text": part}), f)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", help='a UTF-8 text file, or "shakespeare"')
    parser.add_argument("out", type=Path, help="the folder to write part-NNNNN.parquet into")
    parser.add_argument("--files", type=int, default=4, help="parquet files to split the documents over")
    parser.add_argument("--data_dir", default="data", help="where Tiny Shakespeare is (or is downloaded to)")
    args = parser.parse_args()
    try:
        if args.files < 1:
            raise ValueError(f"--files must be at least 1, got {args.files}")
        path = Corpus(args.text, args.data_dir).path
        docs = documents(path.read_text(encoding="utf-8"))
        if len(docs) < args.files:
            raise ValueError(f"{path} has {len(docs)} documents: fewer than --files {args.files}")
        written = write_parquet(docs, args.out, args.files)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {len(docs):,} documents from {path} into {len(written)} files in {args.out}")


if __name__ == "__main__":
    main()
