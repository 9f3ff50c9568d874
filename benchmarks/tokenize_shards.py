"""Tokenizing a corpus of documents into shards: write_shards against tiktoken on one thread, and its memory.

    python benchmarks/tokenize_shards.py [--folder DIR] [--mb 100] [--rss-mb 1000] [--shard-tokens 10000000]
        [--workers 1 2] [--doc-paragraphs 20] [--limit-mb 256] [--seed 0] [--corpus PATH (default: $TINY_SHAKESPEARE)]

The corpus is a folder of .parquet files (one "text" column, 1,000 documents a row group) of
synthetic documents: each is 1 to 2 x doc-paragraphs - 1 paragraphs of Tiny Shakespeare drawn
with a seed, so it is English text of web-document length (about 3 kB at the default 20). It is
built once under --folder (reused when its settings match) or a temporary folder.

Every method reads the same parquet folder through gpt.data.sources.DocumentSource (datasets'
streaming mode), so reading costs each the same, and runs in a fresh child process:

    read only          DocumentSource alone: what reading costs
    tiktoken 1 thread  enc.encode_ordinary(text) per document, in that one process
    tiktoken N threads enc.encode_ordinary_batch(64 documents, num_threads=N): the ceiling of N cores
    write_shards w=N   gpt.data.shards.write_shards with N worker processes (1: in the main process),
                       shards of --shard-tokens ids written, md5-summed and fsynced as in fit

MB/s is the corpus's UTF-8 text over the seconds after imports; CPU s are the seconds of CPU
the main process and the workers used in that time ((main + workers) / wall: the cores the run
got, on a machine that may be shared). Memory is polled every 0.1 s from /proc for the child
and every process it starts (the pool's workers): the main process's and the largest worker's
peak RSS (VmHWM, which counts pages a forked worker shares with its parent in both), and the
peak of the summed PSS of them all (shared pages counted once). The last run tokenizes a corpus
of --rss-mb with the most workers, to show that memory stays flat however large the corpus is;
--limit-mb N (0: no limit) caps each of its processes' address space at what it had after
imports + N MB (RLIMIT_AS), so that growing past that fails the run.
tiktoken's encodings need TIKTOKEN_CACHE_DIR offline; `gpt2` is loaded from `r50k_base`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS_PER_GROUP = 1000  # documents per parquet row group: what datasets reads at a time
FILE_MB = 64  # text per parquet file


from tokenizer_speed import find_corpus  # noqa: E402  (one place that looks for Tiny Shakespeare)

# ---- the synthetic corpus


def make_corpus(folder: Path, source: Path, mb: float, doc_paragraphs: int, seed: int) -> dict:
    """A folder of .parquet files of documents drawn from Tiny Shakespeare's paragraphs; its
    description (bytes, documents, files), reused when one with these settings is there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpt.data.datasets import split_examples

    settings = {"mb": mb, "doc_paragraphs": doc_paragraphs, "seed": seed, "source": source.name}
    info_path = folder / "corpus.info"  # not .json: DocumentSource would read it as documents
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if {k: info.get(k) for k in settings} == settings:
            return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paragraphs = split_examples(source.read_text(encoding="utf-8"), "paragraphs")
    rng = random.Random(seed)
    target, total, n_docs, files = int(mb * 1e6), 0, 0, 0
    start = time.perf_counter()
    while total < target:
        docs, size = [], 0
        while size < FILE_MB * 1e6 and total + size < target:
            doc = "\n".join(rng.choices(paragraphs, k=rng.randint(1, 2 * doc_paragraphs - 1)))
            docs.append(doc)
            size += len(doc.encode("utf-8"))
        pq.write_table(pa.table({"text": docs}), folder / f"part_{files:05d}.parquet", row_group_size=ROWS_PER_GROUP)
        total, n_docs, files = total + size, n_docs + len(docs), files + 1
    parquet = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    info = {**settings, "bytes": total, "docs": n_docs, "files": files, "parquet_bytes": parquet}
    info_path.write_text(json.dumps(info))
    print(
        f"built {folder}: {total / 1e6:,.0f} MB of text in {n_docs:,} documents, {files} parquet files "
        f"({parquet / 1e6:,.0f} MB) in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return info


# ---- one measurement, in a child process


def proc_status(pid: int | str) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status (VmRSS, VmHWM, VmSize, ...)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


def child(spec: dict) -> None:
    """Run one method on the corpus and print its result as JSON on the last line."""
    from gpt.data.shards import CHUNK_DOCS, write_shards
    from gpt.data.sources import DocumentSource
    from gpt.tokenizers import TiktokenTokenizer

    tokenizer = TiktokenTokenizer("gpt2")
    source = DocumentSource(spec["corpus"])
    source.dataset()  # imports datasets, so that the timed part below is the work only
    status = proc_status("self")
    if spec["limit_mb"]:  # each process (forked workers inherit it) may grow by limit_mb
        limit = (status["VmSize"] * 1024) + spec["limit_mb"] * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    method, tokens, docs = spec["method"], 0, 0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if method == "read":
        for _ in source.documents():
            docs += 1
    elif method == "tiktoken":
        enc = tokenizer.enc
        for text in source.documents():
            tokens += len(enc.encode_ordinary(text))
            docs += 1
    elif method == "tiktoken_threads":  # tiktoken's thread pool, a batch of documents at a time
        enc, texts = tokenizer.enc, iter(source.documents())
        while batch := list(itertools.islice(texts, CHUNK_DOCS)):
            tokens += sum(len(ids) for ids in enc.encode_ordinary_batch(batch, num_threads=spec["workers"]))
            docs += len(batch)
    else:
        manifest = write_shards(source.documents, tokenizer, spec["out"], spec["shard_tokens"], workers=spec["workers"])
        tokens, docs = sum(s["tokens"] for s in manifest["shards"]), manifest["shards"][-1]["next_doc"]
    seconds = time.perf_counter() - start
    main_cpu = resource.getrusage(resource.RUSAGE_SELF)
    workers_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, joined by now
    result = {
        "seconds": seconds,
        "tokens": tokens,
        "docs": docs,
        "rss_after_imports_kb": status["VmRSS"],
        "main_cpu": main_cpu.ru_utime + main_cpu.ru_stime - cpu.ru_utime - cpu.ru_stime,
        "workers_cpu": workers_cpu.ru_utime + workers_cpu.ru_stime,
    }
    if method == "write_shards":
        result["shards"] = len(manifest["shards"])
    print(json.dumps(result), flush=True)


def descendants(pid: int) -> list[int]:
    """The processes started by `pid`, and theirs."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def measure(spec: dict) -> dict:
    """Run `spec` in a child process; its result, with the peaks of memory polled from /proc."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    hwm: dict[int, int] = {}
    peak_pss = 0
    while proc.poll() is None:
        total = 0
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                hwm[pid] = max(hwm.get(pid, 0), proc_status(pid).get("VmHWM", 0))
                total += pss_kb(pid)
            except (OSError, ValueError):  # it ended between listing and reading
                pass
        peak_pss = max(peak_pss, total)
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{spec['method']} failed (exit {proc.returncode}); its output:\n{out}")
    result = json.loads(out.strip().splitlines()[-1])
    workers = [kb for pid, kb in hwm.items() if pid != proc.pid]
    result.update(main_kb=hwm.get(proc.pid, 0), worker_kb=max(workers, default=0), pss_kb=peak_pss)
    return result


def mb(kb: int) -> str:
    return f"{kb / 1024:,.0f} MB" if kb else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=None, help="corpora and shards here (kept); default: a temp")
    parser.add_argument("--mb", type=float, default=100, help="text in the corpus the speeds are measured on")
    parser.add_argument("--rss-mb", type=float, default=1000, help="text in the corpus of the memory run (0: none)")
    parser.add_argument("--shard-tokens", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--doc-paragraphs", type=int, default=20, help="mean Shakespeare paragraphs a document")
    parser.add_argument("--limit-mb", type=int, default=256, help="RLIMIT_AS headroom of the memory run's processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None, help="Tiny Shakespeare")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))

    source = args.corpus or find_corpus()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="tokenize_shards_"))
    try:
        small = make_corpus(folder / "corpus", source, args.mb, args.doc_paragraphs, args.seed)
        print(
            f"corpus: {small['bytes'] / 1e6:,.1f} MB of text, {small['docs']:,} documents "
            f"({small['bytes'] / small['docs']:,.0f} B each), {small['files']} parquet files of "
            f"{ROWS_PER_GROUP:,}-document row groups ({small['parquet_bytes'] / 1e6:,.0f} MB); "
            f"shards of {args.shard_tokens:,} ids; {os.cpu_count()} CPUs\n",
            flush=True,
        )
        base = {"corpus": str(folder / "corpus"), "shard_tokens": args.shard_tokens, "limit_mb": 0}
        runs = [("read only (DocumentSource)", {"method": "read"}), ("tiktoken 1 thread", {"method": "tiktoken"})]
        runs += [
            (f"tiktoken {max(args.workers)} threads", {"method": "tiktoken_threads", "workers": max(args.workers)})
        ]
        runs += [(f"write_shards workers={w}", {"method": "write_shards", "workers": w}) for w in args.workers]
        results = {}
        for name, spec in runs:
            out = folder / "shards"
            shutil.rmtree(out, ignore_errors=True)
            results[name] = measure({**base, **spec, "out": str(out)})
            shutil.rmtree(out, ignore_errors=True)
            r = results[name]
            print(f"{name}: {r['seconds']:.1f} s, {r['tokens']:,} tokens, {r['docs']:,} documents", flush=True)

        big, memory = None, None
        if args.rss_mb:
            big = make_corpus(folder / "corpus_rss", source, args.rss_mb, args.doc_paragraphs, args.seed)
            w = max(args.workers)
            name = f"write_shards workers={w}, {big['bytes'] / 1e6:,.0f} MB corpus"
            if args.limit_mb:
                name += f", RLIMIT_AS +{args.limit_mb} MB"
            out = folder / "shards"
            shutil.rmtree(out, ignore_errors=True)
            spec = {**base, "corpus": str(folder / "corpus_rss"), "method": "write_shards", "workers": w}
            try:
                memory = results[name] = measure({**spec, "out": str(out), "limit_mb": args.limit_mb})
            except RuntimeError as e:
                print(f"{name}: {e}", flush=True)
            shutil.rmtree(out, ignore_errors=True)

        tiktoken = results["tiktoken 1 thread"]
        speed_1 = small["bytes"] / tiktoken["seconds"]
        print(
            "\n| method | MB/s | x tiktoken-1-thread | peak RSS main | peak RSS worker | peak PSS all "
            "| CPU s main + workers / wall s |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, r in results.items():
            speed = (big["bytes"] if r is memory else small["bytes"]) / r["seconds"]
            print(
                f"| {name} | {speed / 1e6:.1f} | {speed / speed_1:.2f} | {mb(r['main_kb'])} | {mb(r['worker_kb'])} "
                f"| {mb(r['pss_kb'])} | {r['main_cpu']:.1f} + {r['workers_cpu']:.1f} / {r['seconds']:.1f} |"
            )
        same = all(
            r["tokens"] == tiktoken["tokens"] + tiktoken["docs"]
            for name, r in results.items()
            if name.startswith("write_shards") and r is not memory
        )
        print(
            f"\nafter imports (torch, datasets, tiktoken) a process holds {mb(tiktoken['rss_after_imports_kb'])} RSS; "
            f"write_shards' ids = tiktoken's + one <|endoftext|> a document: {same}"
        )
        if memory:
            text, r = big["bytes"], memory
            print(
                f"memory run: {text / 1e6:,.0f} MB of text ({big['parquet_bytes'] / 1e6:,.0f} MB parquet, "
                f"{r['tokens']:,} tokens = {r['tokens'] * 2 / 1e6:,.0f} MB of uint16 ids in {r['shards']} shards) "
                f"in {r['seconds']:.0f} s; peak summed PSS {mb(r['pss_kb'])} = {r['pss_kb'] * 1024 / text:.2f}x the "
                f"text, main-process peak RSS {mb(r['main_kb'])} = {r['main_kb'] * 1024 / text:.2f}x"
            )
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
