"""gpt/data/shards.py: documents tokenized into shards by worker processes, resumable."""

import json

import numpy as np
import pytest

from gpt.data.shards import id_dtype, open_shards, write_shards
from gpt.tokenizers import ENDOFTEXT, CharTokenizer

DOCS = [f"document {i}: " + "abcdefgh"[: i % 8 + 1] * (i % 5 + 1) + "\n" for i in range(60)]
TOKENIZER = CharTokenizer("".join(sorted(set("".join(DOCS)))), special_tokens=(ENDOFTEXT,))


def documents(skip=0):
    return iter(DOCS[skip:])


def expected_ids() -> np.ndarray:
    return np.concatenate([[TOKENIZER.eot_id, *TOKENIZER.encode(d)] for d in DOCS]).astype(np.uint16)


def all_ids(folder) -> np.ndarray:
    return np.concatenate([np.asarray(s) for split in ("val", "train") for s in open_shards(folder, split)])


def shard_bytes(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_shards_hold_every_document_after_its_endoftext(tmp_path):
    manifest = write_shards(documents, TOKENIZER, tmp_path, shard_tokens=100, val_tokens=150, workers=1)
    assert np.array_equal(all_ids(tmp_path), expected_ids())
    sizes = [(s["file"], s["tokens"]) for s in manifest["shards"]]
    assert sizes[:3] == [("val_000000.bin", 100), ("val_000001.bin", 50), ("train_000002.bin", 100)]
    assert all(n == 100 for _, n in sizes[2:-1]) and 0 < sizes[-1][1] <= 100
    assert sum(n for _, n in sizes) == len(expected_ids()) and manifest["complete"]
    assert sum(len(s) for s in open_shards(tmp_path, "val")) == 150
    assert open_shards(tmp_path, "val")[0].dtype == np.uint16


def test_two_workers_write_the_same_shards_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr("gpt.data.shards.CHUNK_DOCS", 4)  # many chunks in flight, out of order in time
    write_shards(documents, TOKENIZER, tmp_path / "one", shard_tokens=97, val_tokens=40, workers=1)
    write_shards(documents, TOKENIZER, tmp_path / "two", shard_tokens=97, val_tokens=40, workers=2)
    assert shard_bytes(tmp_path / "one") == shard_bytes(tmp_path / "two")


class Killed(BaseException):
    pass


def test_a_run_stopped_halfway_carries_on_to_the_same_shards(tmp_path):
    reference = tmp_path / "reference"
    write_shards(documents, TOKENIZER, reference, shard_tokens=64, val_tokens=64, workers=1)

    def dies_after(n):
        def docs(skip=0):
            for i, doc in enumerate(DOCS[skip:], start=skip):
                if i == n:
                    raise Killed
                yield doc

        return docs

    folder = tmp_path / "stopped"
    with pytest.raises(Killed):
        write_shards(dies_after(37), TOKENIZER, folder, shard_tokens=64, val_tokens=64, workers=1)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert not manifest["complete"] and 3 <= len(manifest["shards"]) < len(
        json.loads((reference / "manifest.json").read_text())["shards"]
    )
    assert not list(folder.glob(".*.tmp"))  # nothing half-written
    skips = []

    def resumed(skip=0):
        skips.append(skip)
        return documents(skip)

    write_shards(resumed, TOKENIZER, folder, shard_tokens=64, val_tokens=64, workers=2)
    assert skips == [manifest["shards"][-1]["next_doc"]] and skips[0] > 0  # carried on, not from the start
    assert shard_bytes(folder) == shard_bytes(reference)


def test_damaged_shards_are_refused_or_written_again(tmp_path):
    write_shards(documents, TOKENIZER, tmp_path, shard_tokens=64, val_tokens=64, workers=1)
    reference = shard_bytes(tmp_path)
    shard = tmp_path / "train_000002.bin"
    shard.write_bytes(b"\0\0" + shard.read_bytes()[2:])
    with pytest.raises(ValueError, match="train_000002.bin does not match its md5"):
        open_shards(tmp_path, "train")
    # An unfinished run with a damaged shard: tokenized again from that shard on.
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["complete"] = False
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    write_shards(documents, TOKENIZER, tmp_path, shard_tokens=64, val_tokens=64, workers=1)
    assert shard_bytes(tmp_path) == reference


def test_other_settings_start_again_and_ids_fit_their_type(tmp_path):
    write_shards(documents, TOKENIZER, tmp_path, shard_tokens=64, val_tokens=64, workers=1)
    manifest = write_shards(documents, TOKENIZER, tmp_path, shard_tokens=80, val_tokens=64, workers=1)
    assert manifest["shard_tokens"] == 80 and manifest["shards"][2]["tokens"] == 80
    assert id_dtype(65_536) is np.uint16 and id_dtype(65_537) is np.uint32 and id_dtype(100_277) is np.uint32


def test_a_tokenizer_without_endoftext_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no <|endoftext|> token to separate documents"):
        write_shards(documents, CharTokenizer("abc"), tmp_path)
    with pytest.raises(FileNotFoundError, match="not complete"):
        open_shards(tmp_path, "train")


def test_a_second_writer_waits_and_reads_what_the_first_wrote(tmp_path):
    """Two runs on one corpus (or every machine on a shared disk): one tokenizes, the other
    waits for its lock and then takes the finished shards without reading a document."""
    import threading

    from gpt.data.shards import one_writer

    reference = write_shards(documents, TOKENIZER, tmp_path / "reference", shard_tokens=64, workers=1)
    folder = tmp_path / "shared"
    read = []

    def second(skip=0):
        read.append(skip)
        return documents(skip)

    results = []
    with one_writer(folder):  # the first run, tokenizing
        waiter = threading.Thread(target=lambda: results.append(write_shards(second, TOKENIZER, folder, 64, workers=1)))
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not results  # waiting for the lock
        for path in (tmp_path / "reference").iterdir():  # the first run finishes its shards
            (folder / path.name).write_bytes(path.read_bytes())
    waiter.join(timeout=10)
    assert results == [reference] and read == []
