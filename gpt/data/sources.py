"""Corpora of documents rather than one running text: local .jsonl and .parquet files (or
folders of them) and Hugging Face hub datasets, read with the `datasets` library.

    docs = DocumentSource("data/owt_parquet", text_field="text")        # a folder of .parquet
    docs = DocumentSource(HubDataset("HuggingFaceFW/fineweb", name="sample-10BT"))
    for text in docs.documents(): ...                                    # in a fixed order

Everything is streamed (datasets' streaming mode): a corpus of billions of tokens is read one
record at a time and never held in memory. The order is the files' path order, then the
records' order in each file: the same on every read, which is what lets tokenization stop and
carry on (gpt/data/shards.py).

Plain Python, no Lightning.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# File endings -> the `datasets` builder that reads them.
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class HubDataset:
    """A dataset on the Hugging Face hub, streamed (needs internet; set HF_TOKEN for gated ones).

    Args:
        path: The dataset's repository, e.g. HuggingFaceFW/fineweb or Skylion007/openwebtext.
        name: Its configuration (datasets' `name`), e.g. sample-10BT.
        split: The split to read; validation is held out from its first tokens (gpt/data/shards.py).
        revision: A commit or tag, so that a rerun reads the very same data.
    """

    path: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None

    def load(self, streaming: bool = False, instead: str = "a local .json/.jsonl file") -> Any:
        """The dataset through `datasets` (imported here: local data never pays for importing it),
        downloaded once into its cache or streamed; the hub's errors, of many kinds (offline,
        misspelt, gated), as one FileNotFoundError that says what to use `instead`."""
        import datasets

        try:
            return datasets.load_dataset(
                self.path, self.name, split=self.split, revision=self.revision, streaming=streaming
            )
        except Exception as e:
            raise FileNotFoundError(
                f"could not open the hub dataset {self.path!r} (name {self.name!r}, split {self.split!r}): {e}. "
                f"Check the name and your connection, or use {instead}"
            ) from None


def is_document_corpus(source: str | HubDataset) -> bool:
    """Whether a corpus is documents to read with `datasets` (a hub dataset, or .jsonl/.parquet
    files) rather than text (.txt)."""
    if isinstance(source, HubDataset):
        return True
    path = Path(source).expanduser()
    if path.is_file():
        return path.suffix in BUILDERS
    return path.is_dir() and any(p.suffix in BUILDERS for p in path.rglob("*") if p.is_file())


class DocumentSource:
    """The documents of a hub dataset or of local .jsonl / .parquet files, in a fixed order.

    Args:
        source: A HubDataset, or the path of a .jsonl/.parquet file or of a folder of them
            (subfolders included, in path order; one kind of file per folder).
        text_field: The field of each record that holds its text.
    """

    def __init__(self, source: str | HubDataset, text_field: str = "text"):
        self.source, self.text_field = source, text_field

    @property
    def name(self) -> str:
        """A short name for file names: the dataset's or the folder's."""
        if isinstance(self.source, HubDataset):
            return "-".join(p for p in (self.source.path.split("/")[-1], self.source.name) if p)
        return Path(self.source).expanduser().stem

    def files(self) -> list[Path]:
        path = Path(self.source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"corpus {str(path)!r} does not exist; pass a .jsonl/.parquet file, a folder of them, or a text file "
                "with --data.corpus PATH"
            )
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in BUILDERS)
        kinds = {BUILDERS[p.suffix] for p in files}
        if len(kinds) > 1:
            raise ValueError(f"corpus folder {str(path)!r} mixes .jsonl and .parquet files; keep one kind per folder")
        return files

    def key(self) -> str:
        """What identifies the data: the hub dataset's coordinates, or the files' names, sizes
        and first MiB (hashing every byte of a 20 GB corpus would take minutes at each start)."""
        if isinstance(self.source, HubDataset):
            s = self.source
            text = f"hub {s.path} {s.name} {s.split} {s.revision} {self.text_field}"
        else:
            root = Path(self.source).expanduser()
            lines = [f"field {self.text_field}"]
            for f in self.files():
                with open(f, "rb") as head:
                    first = hashlib.md5(head.read(1 << 20)).hexdigest()
                name = f.relative_to(root).as_posix() if root.is_dir() else f.name
                lines.append(f"{name} {f.stat().st_size} {first}")
            text = "\n".join(lines)
        return hashlib.md5(text.encode()).hexdigest()[:12]

    def dataset(self):
        """The `datasets` IterableDataset over the records (imported here: a text corpus never
        pays for importing `datasets`)."""
        import datasets

        datasets.disable_progress_bars()  # a bar per file of a local folder says nothing useful
        if isinstance(self.source, HubDataset):
            return self.source.load(streaming=True, instead="a local .jsonl/.parquet folder with --data.corpus PATH")
        files = self.files()
        if not files:
            raise FileNotFoundError(f"corpus folder {str(self.source)!r} has no .jsonl or .parquet files")
        builder = BUILDERS[files[0].suffix]
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", streaming=True)

    def documents(self, skip: int = 0) -> Iterator[str]:
        """The text of every record, in order, after the first `skip` records."""
        try:
            dataset = self.dataset()
        except StopIteration:  # `datasets` finds no record to infer the columns from: no documents
            return
        except FileNotFoundError:  # ours, which says what to do
            raise
        except (OSError, ValueError) as e:  # not JSON, not parquet: pyarrow's errors
            raise ValueError(f"corpus {self.name!r} cannot be read ({type(e).__name__}: {e})") from None
        if skip:
            dataset = dataset.skip(skip)
        records = iter(dataset)
        for i in itertools.count(skip):
            try:
                record = next(records)
            except StopIteration:  # the end (an empty file ends at once)
                return
            except (OSError, ValueError) as e:  # not JSON, not parquet, cut short: pyarrow's errors
                raise ValueError(
                    f"corpus {self.name!r} cannot be read after record {i} ({type(e).__name__}: {e}); check its "
                    "files, or give another --data.corpus"
                ) from None
            yield self.text_of(record, i)

    def text_of(self, record: dict, i: int) -> str:
        text = record.get(self.text_field)  # None too where other records of the file have it
        if text is None:
            fields = ", ".join(sorted(k for k, v in record.items() if v is not None))
            raise ValueError(
                f"record {i} of corpus {self.name!r} has no field {self.text_field!r} (its fields: {fields}); "
                "name the text field with --data.text_field"
            )
        if not isinstance(text, str):
            raise ValueError(f"record {i} of corpus {self.name!r}: field {self.text_field!r} is not text")
        return text
