"""A benchmark's data file, read and checked: where it is, that every line is a record with the
fields the task needs (else the file and line), and that its bytes are the published ones (the
sha256 that ../shared/data/eval/NOTICE gives: else it is damaged).

Plain Python, no Lightning.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

SEARCHED = ("data/eval", "../shared/data/eval")  # where the data is looked for when no folder is given


def find_data_dir(data_dir: str | Path | None, needed: str) -> Path:
    """The folder that holds `needed` (a path inside it, e.g. humaneval/HumanEval.jsonl.gz):
    data_dir if given, else the first of SEARCHED that holds it."""
    candidates = [Path(data_dir)] if data_dir is not None else [Path(d) for d in SEARCHED]
    for folder in candidates:
        if (folder / needed).is_file():
            return folder
    if data_dir is not None:
        raise FileNotFoundError(
            f"{Path(data_dir) / needed} does not exist: put it there (its source: ../shared/data/eval/NOTICE)"
        )
    raise FileNotFoundError(
        f"{needed} is in neither data/eval/ nor ../shared/data/eval/: put it in data/eval/ "
        "(its source: ../shared/data/eval/NOTICE), or name its folder with --data_dir"
    )


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 (or none, for every item), got {limit}")


def load_jsonl(path: Path, sha256: str, fields: tuple[str, ...], limit: int | None = None) -> list[dict[str, Any]]:
    """Every record of a .jsonl (or .jsonl.gz) file, each a JSON object with `fields`, then the
    first `limit` of them. A malformed line is a ValueError naming the file and line; a file
    whose records are well formed but whose bytes are not the published ones, one that says it
    is damaged."""
    check_limit(limit)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: put the file there (its source: ../shared/data/eval/NOTICE)")
    data = path.read_bytes()
    try:
        text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is damaged ({type(e).__name__}: {e}): copy it again from its source") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not JSON ({e.msg} at column {e.colno})") from None
        missing = [f for f in fields if not isinstance(record, dict) or not isinstance(record.get(f), str)]
        if missing:
            raise ValueError(f"{path}, line {number}: expected a JSON object with the text fields {', '.join(fields)}")
        records.append(record)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(
            f"{path} is damaged: its sha256 is {digest[:16]}..., the published file's {sha256[:16]}...: "
            "copy it again from its source"
        )
    return records[:limit]
