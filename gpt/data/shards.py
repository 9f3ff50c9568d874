"""Tokenize a corpus of documents into shards of token ids, with worker processes, in a way
that a killed run carries on from where it stopped (as llm.c's fineweb.py, made resumable).

    manifest = write_shards(docs, tokenizer, "data/shards/fineweb-...", shard_tokens=100_000_000,
                            val_tokens=10_485_760)
    train = open_shards("data/shards/fineweb-...", "train")      # [np.memmap, ...]

Each document becomes <|endoftext|> + its ids (GPT-2's document separator), and the ids run
on from document to document, shard to shard. The first val_tokens ids are the validation
shards (val_000000.bin, ...), the rest the training shards (train_00000N.bin), each of at most
shard_tokens ids: raw uint16 (uint32 for a vocabulary over 65,536), no header.

manifest.json lists the finished shards: tokens, md5, and the position in the document
stream where the next shard begins (document index, ids of it already written). Each shard and
then the manifest are written atomically, so after a kill the manifest describes whole shards
only; a rerun checks them and tokenizes on from that position. The document order is fixed
(gpt/data/sources.py), so the shards are the same as an uninterrupted run's, byte for byte.

Memory stays flat: documents are read one at a time and at most a few chunks of them are in
flight to the workers; one shard's buffer is the largest thing held.

Plain Python and numpy, no Lightning.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gpt.files import atomic_write, md5_of, write_text
from gpt.tokenizers import ENDOFTEXT, Tokenizer

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
SHARD_TOKENS = 100_000_000  # llm.c's shard size: 200 MB of uint16 ids
CHUNK_DOCS = 64  # documents sent to a worker at a time
IN_FLIGHT = 4  # chunks queued per worker: enough to keep them busy, few enough to bound memory
CHECK_MD5_BYTES = 1 << 30  # opening shards checks md5s up to this size; sizes always


def id_dtype(vocab_size: int) -> type:
    """The smallest unsigned integer type that holds every id."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


# ---- encoding documents in worker processes

_tokenizer: Tokenizer | None = None  # each worker's copy, set once when it starts


def _start_worker(tokenizer: Tokenizer) -> None:
    global _tokenizer
    _tokenizer = tokenizer
    # Ctrl-C and SIGTERM are the main process's to handle (it stops the workers); and a worker
    # must not outlive a main process killed outright, waiting for work forever.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed with its parent


def encode_document(text: str, tokenizer: Tokenizer | None = None) -> np.ndarray:
    """<|endoftext|> then the document's ids (special-token text inside it is plain text)."""
    tokenizer = tokenizer or _tokenizer
    ids = [tokenizer.eot_id, *tokenizer.encode(text)]
    return np.asarray(ids, dtype=id_dtype(tokenizer.vocab_size))


def _encode_chunk(texts: list[str]) -> list[np.ndarray]:
    return [encode_document(t) for t in texts]


def encoded(documents: Iterable[str], tokenizer: Tokenizer, workers: int) -> Iterator[np.ndarray]:
    """Each document's ids, in order, encoded by `workers` processes (1: in this one)."""
    if workers <= 1:
        yield from (encode_document(t, tokenizer) for t in documents)
        return
    docs = iter(documents)
    with multiprocessing.Pool(workers, initializer=_start_worker, initargs=(tokenizer,)) as pool:
        pending = deque()  # results in document order; a bounded queue keeps memory flat
        while chunk := list(itertools.islice(docs, CHUNK_DOCS)):
            pending.append(pool.apply_async(_encode_chunk, (chunk,)))
            if len(pending) >= IN_FLIGHT * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


# ---- writing shards


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.bin"


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning(f"warning: the shard manifest in {folder} cannot be read ({e}); tokenizing from the start")
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("shards"), list) else None


def shard_problem(folder: Path, shard: dict, dtype: np.dtype, md5: bool = True) -> str | None:
    """What is wrong with a finished shard, checked against its manifest entry, or None."""
    path = folder / shard["file"]
    if not path.is_file():
        return f"{path} is missing"
    if path.stat().st_size != shard["tokens"] * dtype.itemsize:
        return f"{path} holds {path.stat().st_size // dtype.itemsize:,} ids where the manifest says {shard['tokens']:,}"
    if md5 and md5_of(path) != shard["md5"]:
        return f"{path} does not match its md5 in the manifest (its bytes changed after it was written)"
    return None


def finished_shards(folder: Path, settings: dict) -> list[dict]:
    """The shards an earlier run finished that are intact and were written with these settings."""
    manifest = read_manifest(folder)
    if manifest is None:
        return []
    if {k: manifest.get(k) for k in settings} != settings:
        log.warning(f"warning: the shards in {folder} were written with other settings; tokenizing from the start")
        return []
    kept = []
    for shard in manifest["shards"]:
        problem = shard_problem(folder, shard, np.dtype(settings["dtype"]))
        if problem is not None:
            log.warning(f"warning: {problem}; tokenizing again from that shard")
            break
        kept.append(shard)
    return kept


def complete_manifest(folder: Path, settings: dict) -> dict | None:
    """The manifest of shards finished with these settings, or None."""
    manifest = read_manifest(folder)
    done = manifest is not None and manifest.get("complete")
    return manifest if done and {k: manifest.get(k) for k in settings} == settings else None


@contextlib.contextmanager
def one_writer(folder: Path) -> Iterator[None]:
    """Hold the folder's lock: two runs started on the same corpus (or every machine of a
    cluster on a shared disk) tokenize it once, the others wait and then read it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"Waiting for another process that is tokenizing into {folder}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_shards(
    documents: Callable[[int], Iterator[str]],
    tokenizer: Tokenizer,
    folder: str | Path,
    shard_tokens: int = SHARD_TOKENS,
    val_tokens: int | None = None,
    workers: int | None = None,
    identity: dict | None = None,
) -> dict:
    """Tokenize the documents into shards under `folder` (carrying on from the shards an earlier,
    interrupted run finished) and return the manifest.

    Args:
        documents: documents(skip) -> the corpus's documents after the first `skip`, in a fixed order.
        tokenizer: Encodes each document; needs <|endoftext|>.
        shard_tokens: Ids per shard.
        val_tokens: The first ids, held out for validation (default: one shard's worth).
        workers: Encoding processes (default: every core).
        identity: What the data is (source, tokenizer), kept in the manifest and checked on reuse.
    """
    if tokenizer.eot_id is None:
        raise ValueError(f"{tokenizer!r} has no {ENDOFTEXT} token to separate documents; use a tokenizer with one")
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    folder = Path(folder)
    val_tokens = shard_tokens if val_tokens is None else val_tokens
    dtype = np.dtype(id_dtype(tokenizer.vocab_size))
    settings = {"shard_tokens": shard_tokens, "val_tokens": val_tokens, "dtype": dtype.name, **(identity or {})}
    if (manifest := complete_manifest(folder, settings)) is not None:
        return manifest  # done before (open_shards checks the files)
    with one_writer(folder):
        if (manifest := complete_manifest(folder, settings)) is not None:
            return manifest  # another process finished them while this one waited
        for stale in folder.glob(".*.tmp"):  # a shard a killed run was writing: never finished
            stale.unlink()
        shards = finished_shards(folder, settings)
        if shards:
            tokens = sum(s["tokens"] for s in shards)
            log.info(f"Carrying on from {len(shards)} finished shards ({tokens:,} tokens) in {folder}")
        writer = ShardWriter(folder, {**settings, "shards": shards, "complete": False}, dtype)
        doc, offset = (shards[-1]["next_doc"], shards[-1]["next_offset"]) if shards else (0, 0)
        bar = tqdm(
            desc=f"Tokenizing into {folder.name}", unit="tok", unit_scale=True, initial=writer.written, disable=None
        )
        with bar:
            workers = workers or os.cpu_count() or 1
            for doc, ids in enumerate(encoded(documents(doc), tokenizer, workers), start=doc):
                writer.add(ids, doc, offset)  # the first document after a restart: from `offset` on
                bar.update(len(ids) - offset)
                offset = 0
            writer.flush(doc + 1, 0)
        writer.manifest["complete"] = True
        write_text(folder / "manifest.json", json.dumps(writer.manifest, indent=1) + "\n")
        log.info(f"Tokenized {writer.written:,} tokens into {len(writer.manifest['shards'])} shards in {folder}")
        return writer.manifest


class ShardWriter:
    """Fills shards with ids, document after document, and writes each when it is full: the
    shard atomically, then the manifest that lists it, with where the next shard starts."""

    def __init__(self, folder: Path, manifest: dict, dtype: np.dtype):
        self.folder, self.manifest = folder, manifest
        self.written = sum(s["tokens"] for s in manifest["shards"])  # ids in finished shards
        self.buffer = np.empty(manifest["shard_tokens"], dtype=dtype)
        self.filled = 0  # ids in the buffer

    def capacity(self) -> tuple[str, int]:
        """The split of the shard being filled, and how many ids it takes: the first val_tokens
        ids are validation shards, the rest training shards."""
        shard_tokens, val_tokens = self.manifest["shard_tokens"], self.manifest["val_tokens"]
        if self.written < val_tokens:
            return "val", min(shard_tokens, val_tokens - self.written)
        return "train", shard_tokens

    def add(self, ids: np.ndarray, doc: int, start: int = 0) -> None:
        """Document `doc`'s ids from `start` on."""
        while start < len(ids):
            _, room = self.capacity()
            take = min(room - self.filled, len(ids) - start)
            self.buffer[self.filled : self.filled + take] = ids[start : start + take]
            self.filled, start = self.filled + take, start + take
            if self.filled == room:  # the next shard starts inside this document, or at the next one
                if start < len(ids):
                    self.flush(doc, start)
                else:
                    self.flush(doc + 1, 0)

    def flush(self, next_doc: int, next_offset: int) -> None:
        """Write the buffer as the next shard (if it holds anything), then the manifest."""
        if not self.filled:
            return
        split, _ = self.capacity()
        name = shard_name(split, len(self.manifest["shards"]))
        with atomic_write(self.folder / name) as f:
            f.write(self.buffer[: self.filled].tobytes())
        self.manifest["shards"].append(
            {
                "file": name,
                "split": split,
                "tokens": self.filled,
                "md5": md5_of(self.folder / name),
                "next_doc": next_doc,  # where the next shard begins: this document,
                "next_offset": next_offset,  # after this many of its ids
            }
        )
        write_text(self.folder / "manifest.json", json.dumps(self.manifest, indent=1) + "\n")  # after the shard
        self.written, self.filled = self.written + self.filled, 0


# ---- reading shards


def open_shards(folder: str | Path, split: str) -> list[np.ndarray]:
    """The shards of a split, memory-mapped, after checking them against the manifest (sizes
    always; md5s while the corpus is under CHECK_MD5_BYTES, as hashing tens of GB takes minutes)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or not manifest.get("complete"):
        raise FileNotFoundError(f"the shards in {folder} are not complete; run fit again to finish tokenizing")
    dtype = np.dtype(manifest["dtype"])
    check_md5 = sum(s["tokens"] for s in manifest["shards"]) * dtype.itemsize <= CHECK_MD5_BYTES
    shards = [s for s in manifest["shards"] if s["split"] == split]
    for shard in shards:
        problem = shard_problem(folder, shard, dtype, md5=check_md5)
        if problem is not None:
            raise ValueError(f"{problem}; delete {folder} to tokenize the corpus again")
    return [np.memmap(folder / s["file"], dtype=dtype, mode="r") for s in shards]
