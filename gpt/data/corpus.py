"""Corpora: find or download the text, read it in blocks, pick its tokenizer, and encode it
once into a token cache.

    corpus = Corpus("shakespeare", data_dir="data")    # or a .txt file, or a folder of them
    tokenizer = corpus.tokenizer(tokenizer_config("char"))
    ids = corpus.ids(tokenizer)                         # np.memmap of uint16/uint32 ids

A folder's .txt files (sorted by path, subfolders included) are documents, joined with
<|endoftext|>. The ids are written once, in batches of blocks, to
data_dir/cache/<name>-<content hash>-<tokenizer>-<tokenizer hash>.<dtype>: a changed corpus
or tokenizer gets a new file, so a stale cache is never read. Beside it, <file>.json, its
manifest (token count, dtype, tokenizer, md5), is checked whenever the cache is opened: a
cache cut short, zeroed, or swapped for another is encoded again, with a warning.

Plain Python and numpy, no Lightning.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gpt.data.download import download_shakespeare
from gpt.data.shards import SHARD_TOKENS, id_dtype, open_shards, write_shards
from gpt.data.sources import DocumentSource, HubDataset, is_document_corpus
from gpt.files import atomic_write, md5_of, write_text
from gpt.tokenizers import ENDOFTEXT, BPETokenizer, CharTokenizer, TiktokenTokenizer, Tokenizer
from gpt.tokenizers.bpe import SPLIT_PATTERNS
from gpt.tokenizers.settings import TokenizerConfig

log = logging.getLogger(__name__)

BLOCK_CHARS = 1 << 18  # text is read, and encoded, about 256k characters at a time
BATCH_BLOCKS = 32  # blocks per call of the tokenizer's (multi-threaded) batch encoder


def safe_cut(text: str, start: int = 0) -> int:
    """The end of the last line in `text` after which a tokenizer cannot join across.

    That is a newline that follows a non-space character and is followed by a letter.
    The pre-split patterns of GPT-2, GPT-4 and characters all end a piece there and
    start the next one at the letter, so encoding the two sides apart gives the same ids
    as encoding them together. Returns the cut position (> start), or -1 if there is none.
    """
    i = len(text) - 1
    while True:
        i = text.rfind("\n", max(start, 1), i)
        if i < 0:
            return -1
        if i + 1 < len(text) and not text[i - 1].isspace() and text[i + 1].isalpha():
            return i + 1


def read_blocks(path: Path, block_chars: int | None = None) -> Iterator[str]:
    """The text of `path` in blocks of about block_chars (default BLOCK_CHARS) characters,
    cut at `safe_cut`."""
    block_chars = block_chars or BLOCK_CHARS
    carry = ""
    try:
        with open(path, encoding="utf-8", newline="") as f:  # every character as written: \r, tabs
            while chunk := f.read(block_chars):
                text = carry + chunk
                cut = safe_cut(text, start=max(0, len(carry) - 1))  # the carry has no cut in it
                if cut < 0:
                    carry = text  # no safe place yet: read on
                    continue
                yield text[:cut]
                carry = text[cut:]
    except UnicodeDecodeError as e:
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8 text ({e})") from None
    if carry:
        yield carry


def glob_of(source: str | HubDataset) -> tuple[Path, str] | None:
    """(folder, pattern) of a corpus given as a glob, `src/**/*.py` -> (src, **/*.py); else None."""
    parts = Path(str(source)).expanduser().parts
    first = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    if first is None:
        return None
    return Path(*parts[:first]) if first else Path("."), "/".join(parts[first:])


def is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def what_is_there(files: list[Path]) -> str:
    """' (it has 12 .py, 3 .md)': the commonest endings among a folder's files, for an error."""
    counts = collections.Counter(p.suffix or "(no ending)" for p in files)
    listed = ", ".join(f"{n} {suffix}" for suffix, n in counts.most_common(4))
    return f" (it has {listed})" if listed else " (it is empty)"


class Corpus:
    """A corpus on disk, with its trained tokenizers and token caches under data_dir.

    Args:
        source: "shakespeare" (found under data_dir, else downloaded), the path of a UTF-8
            text file, a folder whose files with one of `extensions` are the documents, or a
            glob of files (`src/**/*.py`); or documents read with `datasets`
            (gpt/data/sources.py): .jsonl/.parquet files or a HubDataset, tokenized into shards
            (gpt/data/shards.py) rather than one cache file.
        data_dir: Where downloaded corpora, trained tokenizers and token caches are kept.
        text_field: The field of a .jsonl/.parquet/hub record that holds its text.
        extensions: A folder's documents: its files with these endings, subfolders included.
    """

    def __init__(
        self,
        source: str | HubDataset = "shakespeare",
        data_dir: str | Path = "data",
        text_field: str = "text",
        extensions: tuple[str, ...] = (".txt",),
    ):
        self.source, self.data_dir, self.extensions = source, Path(data_dir), tuple(extensions)
        self.documents = DocumentSource(source, text_field) if is_document_corpus(source) else None
        self.glob = None if self.documents is not None else glob_of(source)
        self._key: str | None = None
        self._verified: set[Path] = set()  # caches checked against their manifest in this process

    @property
    def path(self) -> Path:
        """The corpus file or folder (a glob's folder): the user's path, else Tiny Shakespeare
        under data_dir, downloaded when missing."""
        if self.source == "shakespeare":
            path = self.data_dir / "tinyshakespeare" / "input.txt"
            return path if path.is_file() else download_shakespeare(path)
        path = self.glob[0] if self.glob else Path(self.source).expanduser()
        if not path.exists() and self.glob:
            raise FileNotFoundError(
                f"the folder {str(path)!r} of the corpus glob {str(self.source)!r} does not exist (from "
                f"{Path.cwd()}); check the folder, or give its absolute path"
            )
        if not path.exists():
            raise FileNotFoundError(
                f"corpus file {str(path)!r} does not exist; pass the path of a UTF-8 text file, a folder of .txt "
                "files or a glob such as 'src/**/*.py' with --data.corpus PATH, or 'shakespeare' for Tiny Shakespeare"
            )
        return path

    @property
    def is_folder(self) -> bool:
        """Whether the corpus is documents (joined with <|endoftext|>) rather than one text."""
        return self.documents is not None or self.glob is not None or self.path.is_dir()

    @property
    def name(self) -> str:
        """A short name for file names: the file's stem, the folder's (or the glob's folder's) name."""
        if self.documents is not None:
            return self.documents.name
        return self.path.resolve().name if self.glob else self.path.stem

    def files(self) -> list[Path]:
        """The documents in path order: one file, a folder's files with one of the extensions,
        or the files a glob matches; hidden files and folders (.git) left out."""
        path = self.path
        if path.is_file():
            return [path]
        found = path.glob(self.glob[1]) if self.glob else path.rglob("*")
        files = sorted(p for p in found if p.is_file() and not is_hidden(p, path))
        if self.glob:
            if not files:
                raise FileNotFoundError(f"corpus glob {str(self.source)!r} matches no files; check the pattern")
            return files
        chosen = [p for p in files if p.suffix in self.extensions]
        if not chosen:
            raise FileNotFoundError(
                f"corpus folder {str(path)!r} has no {' or '.join(self.extensions)} files{what_is_there(files)}; "
                "choose its files with --data.extensions '[.py, .md]' or a glob such as --data.corpus "
                f"'{path.as_posix()}/**/*.py'"
            )
        return chosen

    def key(self) -> str:
        """A hash of the content (and, for a folder, of its documents' names and order)."""
        if self._key is None and self.documents is not None:
            self._key = self.documents.key()
        if self._key is None:
            path, files = self.path, self.files()
            if path.is_file():
                self._key = md5_of(path)[:12]
            else:
                listing = "\n".join(f"{f.relative_to(path).as_posix()} {md5_of(f)}" for f in files)
                self._key = hashlib.md5(listing.encode()).hexdigest()[:12]
        return self._key

    def blocks(self, fraction: float = 1.0) -> Iterator[str]:
        """The text in blocks, documents one after the other, up to `fraction` of its bytes.
        (A block never spans two documents.)"""
        if self.documents is not None:  # documents of unknown total size: all of them
            yield from self.documents.documents()
            return
        files = self.files()
        budget = fraction * sum(f.stat().st_size for f in files)
        for f in files:
            for block in read_blocks(f):
                size = len(block.encode("utf-8"))
                if size >= budget:
                    yield block.encode("utf-8")[: int(budget)].decode("utf-8", errors="ignore")
                    return
                budget -= size
                yield block

    # ---- the tokenizer

    def tokenizer(self, config: TokenizerConfig, special: tuple[str, ...] = (), val_fraction: float = 0.1) -> Tokenizer:
        """The tokenizer that config names. "char": the corpus's characters, with `special`
        tokens after them (and <|endoftext|> for a folder's documents). "bpe": trained on
        the first 1 - val_fraction of the corpus (the training split), saved under
        data_dir/tokenizers and reused while corpus and settings stay the same."""
        if config.kind == "tiktoken":
            return TiktokenTokenizer(config.encoding)
        if config.kind == "bpe":
            if not config.path and self.documents is not None:
                raise ValueError(
                    f"a BPE is trained on a text corpus; for the documents of {self.name!r} give a trained one with "
                    "data.tokenizer.path, or use data.tokenizer.kind tiktoken"
                )
            return BPETokenizer.load(config.path) if config.path else self.trained_bpe(config, val_fraction)
        chars: set[str] = set()
        for block in self.blocks():
            chars.update(block)
        if not chars:
            raise ValueError(f"corpus {str(self.source)!r} is empty")
        special = ((ENDOFTEXT,) if self.is_folder else ()) + tuple(special)
        return CharTokenizer("".join(sorted(chars)), special_tokens=special)

    def bpe_path(self, config: TokenizerConfig, val_fraction: float) -> Path:
        name = f"bpe-{self.name}-{self.key()}-{config.vocab_size}-{config.pattern}-val{val_fraction}.json"
        return self.data_dir / "tokenizers" / name

    def trained_bpe(self, config: TokenizerConfig, val_fraction: float) -> BPETokenizer:
        path = self.bpe_path(config, val_fraction)
        if path.is_file():
            try:
                return BPETokenizer.load(path)
            except ValueError as e:  # damaged: it is only a cache of the training below
                log.warning(f"warning: {e}; training the BPE again")
        log.info(f"Training a {config.vocab_size}-token BPE on the training split of {self.path}")
        train_text = self.blocks(1 - val_fraction)
        tokenizer = BPETokenizer.train(train_text, config.vocab_size, SPLIT_PATTERNS[config.pattern])
        tokenizer.save(path)
        log.info(f"Saved the BPE tokenizer to {path}")
        return tokenizer

    # ---- the token cache

    def ids_path(self, tokenizer: Tokenizer) -> Path:
        """The cache file of the encoded corpus, keyed by its content and the tokenizer."""
        dtype = np.dtype(id_dtype(tokenizer.vocab_size)).name
        key = f"{self.key()}-{tokenizer.kind}-{tokenizer.identity()}"
        return self.data_dir / "cache" / f"{self.name}-{key}.{dtype}"

    def encode(self, tokenizer: Tokenizer) -> Path:
        """Tokenize the corpus once, in batches of blocks, straight to the cache file.

        Memory holds one batch of text and its ids, never the whole corpus. Documents of a
        folder are joined with <|endoftext|>. Later runs memory-map the cached ids, once its
        manifest vouches for it.
        """
        path = self.ids_path(tokenizer)
        if path in self._verified:
            return path
        if path.is_file():
            problem = cache_problem(path, self.manifest(tokenizer, path))
            if problem is None:
                self._verified.add(path)
                return path
            log.warning(f"warning: the token cache {path} {problem}; encoding the corpus again")
        files = self.files()
        dtype = id_dtype(tokenizer.vocab_size)
        if len(files) > 1 and tokenizer.eot_id is None:
            raise ValueError(f"{tokenizer!r} has no {ENDOFTEXT} token to join the documents of a folder corpus")
        n_tokens, total = 0, sum(f.stat().st_size for f in files)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"Encoding {self.name}", disable=None)
        with atomic_write(path) as out, bar:
            for i, f in enumerate(files):
                if i > 0:
                    out.write(
                        np.asarray([tokenizer.eot_id], dtype=dtype).tobytes()
                    )  # documents joined by <|endoftext|>
                    n_tokens += 1
                blocks = read_blocks(f)
                while batch := list(itertools.islice(blocks, BATCH_BLOCKS)):
                    for ids in tokenizer.encode_batch(batch):
                        out.write(np.asarray(ids, dtype=dtype).tobytes())  # not tofile: its errors lack errno
                        n_tokens += len(ids)
                    bar.update(sum(len(b.encode("utf-8")) for b in batch))
        manifest = self.manifest(tokenizer, path) | {"tokens": n_tokens, "md5": md5_of(path)}
        write_text(manifest_path(path), json.dumps(manifest, indent=1) + "\n")  # after the ids: it vouches for them
        self._verified.add(path)
        log.info(f"Encoded {self.path} into {n_tokens:,} tokens with {tokenizer!r}, cached at {path}")
        return path

    def manifest(self, tokenizer: Tokenizer, path: Path) -> dict:
        """What a cache's manifest must say besides its token count and md5."""
        return {"corpus": self.key(), "tokenizer": f"{tokenizer.kind}-{tokenizer.identity()}", "dtype": path.suffix[1:]}

    def ids(self, tokenizer: Tokenizer) -> np.ndarray:
        """The encoded corpus, memory-mapped from its cache (encoded first if need be)."""
        return np.memmap(self.encode(tokenizer), dtype=id_dtype(tokenizer.vocab_size), mode="r")

    # ---- shards, for corpora of documents

    def shards_dir(self, tokenizer: Tokenizer, shard_tokens: int, val_tokens: int) -> Path:
        """Where the corpus's shards for this tokenizer and these sizes live."""
        key = f"{self.key()}-{tokenizer.kind}-{tokenizer.identity()}-shard{shard_tokens}-val{val_tokens}"
        return self.data_dir / "shards" / f"{self.name}-{key}"

    def write_shards(
        self, tokenizer: Tokenizer, shard_tokens: int = SHARD_TOKENS, val_tokens: int | None = None, workers=None
    ) -> Path:
        """Tokenize the documents into shards (carrying on from an interrupted run); their folder."""
        val_tokens = shard_tokens if val_tokens is None else val_tokens
        folder = self.shards_dir(tokenizer, shard_tokens, val_tokens)
        identity = {"corpus": self.key(), "tokenizer": f"{tokenizer.kind}-{tokenizer.identity()}"}
        write_shards(self.documents.documents, tokenizer, folder, shard_tokens, val_tokens, workers, identity)
        return folder

    def shards(self, tokenizer: Tokenizer, split: str, shard_tokens: int, val_tokens: int | None) -> list[np.ndarray]:
        """The shards of a split ("train" or "val"), memory-mapped, after checking them."""
        val_tokens = shard_tokens if val_tokens is None else val_tokens
        return open_shards(self.shards_dir(tokenizer, shard_tokens, val_tokens), split)


def manifest_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".json")


def cache_problem(cache: Path, expected: dict) -> str | None:
    """What is wrong with a token cache, checked against its manifest, or None."""
    try:
        manifest = json.loads(manifest_path(cache).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "has no manifest (written before caches were checked, or cut short while writing)"
    except (OSError, ValueError) as e:
        return f"has a manifest that cannot be read ({e})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tokens"), int):
        return "has a manifest that is not one"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"was written for {key} {manifest.get(key)!r}, not {value!r}"
    size, itemsize = cache.stat().st_size, np.dtype(expected["dtype"]).itemsize
    if size != manifest["tokens"] * itemsize:
        return f"holds {size // itemsize:,} tokens where its manifest says {manifest['tokens']:,}"
    if md5_of(cache) != manifest.get("md5"):
        return "does not match its manifest's md5 (its bytes changed after it was written)"
    return None
