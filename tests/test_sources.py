"""gpt/data/sources.py: documents of .jsonl / .parquet files (and hub datasets) through `datasets`."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpt.data.sources import DocumentSource, HubDataset, is_document_corpus
from helpers import write_jsonl


def test_a_folder_of_jsonl_reads_every_record_in_path_order(tmp_path):
    write_jsonl(tmp_path / "b" / "c.jsonl", [{"content": "third"}])
    write_jsonl(tmp_path / "a.jsonl", [{"content": "first", "id": 1}, {"content": "second", "id": 2}])
    source = DocumentSource(str(tmp_path), text_field="content")
    assert list(source.documents()) == ["first", "second", "third"]
    assert list(source.documents(skip=2)) == ["third"]
    assert is_document_corpus(str(tmp_path)) and not is_document_corpus(str(tmp_path / "missing"))


def test_parquet_files_and_their_key(tmp_path):
    pq.write_table(pa.table({"text": ["one", "two"]}), tmp_path / "0.parquet")
    pq.write_table(pa.table({"text": ["three"]}), tmp_path / "1.parquet")
    source = DocumentSource(str(tmp_path))
    assert list(source.documents()) == ["one", "two", "three"]
    key = source.key()
    assert DocumentSource(str(tmp_path)).key() == key  # the same data: the same shards
    assert DocumentSource(str(tmp_path), text_field="body").key() != key
    pq.write_table(pa.table({"text": ["THREE"]}), tmp_path / "1.parquet")
    assert DocumentSource(str(tmp_path)).key() != key  # changed data: new shards


def test_a_text_corpus_is_not_read_through_datasets(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    assert not is_document_corpus(str(tmp_path)) and not is_document_corpus(str(tmp_path / "a.txt"))
    assert is_document_corpus(HubDataset("HuggingFaceFW/fineweb", name="sample-10BT"))


def test_a_record_without_the_text_field_is_named(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "fine"}, {"body": "no text here"}])
    with pytest.raises(ValueError, match=r"record 1 of corpus 'a' has no field 'text' \(its fields: body\)"):
        list(DocumentSource(str(tmp_path / "a.jsonl")).documents())


def test_mixed_folders_and_missing_paths_are_refused(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    pq.write_table(pa.table({"text": ["y"]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match="mixes .jsonl and .parquet"):
        list(DocumentSource(str(tmp_path)).documents())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DocumentSource(str(tmp_path / "nope")).files()


def test_an_unreachable_hub_dataset_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a machine without internet sees, at once
    source = DocumentSource(HubDataset("HuggingFaceFW/fineweb", name="sample-10BT"))
    assert source.name == "fineweb-sample-10BT"
    with pytest.raises(FileNotFoundError, match="could not open the hub dataset 'HuggingFaceFW/fineweb'"):
        next(source.documents())


def test_instructions_and_problems_from_the_hub_are_read_and_checked_and_unreachable_is_one_error(monkeypatch):
    import datasets

    from gpt.data.instructions import read_hub_records
    from gpt.data.problems import read_hub_problems

    asked = []

    def load_dataset(path, name, split, revision, streaming):
        asked.append((path, name, split, revision, streaming))
        if path == "nowhere/none":
            raise ConnectionError("offline")
        return [{"instruction": "Add.", "input": "2 and 3", "output": "5", "question": "2+3", "answer": "5"}]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    records = read_hub_records(HubDataset("tatsu-lab/alpaca"))
    assert [m.content for m in records[0].messages][-1] == "5"
    assert read_hub_problems(HubDataset("openai/gsm8k", name="main"), "question")[0]["answer"] == "5"
    assert asked == [("tatsu-lab/alpaca", None, "train", None, False), ("openai/gsm8k", "main", "train", None, False)]
    for read, option in (
        (read_hub_records, "data.instructions.path"),
        (lambda h: read_hub_problems(h, "q"), "data.problems.path"),
    ):
        with pytest.raises(FileNotFoundError) as error:
            read(HubDataset("nowhere/none"))
        assert str(error.value) == (
            "could not open the hub dataset 'nowhere/none' (name None, split 'train'): offline. Check the name and "
            f"your connection, or use a local .json/.jsonl file with {option}"
        )


def test_files_that_are_not_what_they_say_are_named_and_empty_ones_hold_nothing(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(ValueError, match=r"corpus 'bad' cannot be read \(ArrowInvalid: Parquet magic bytes"):
        list(DocumentSource(str(tmp_path / "bad.parquet")).documents())
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match=r"corpus 'bad' cannot be read .*JSON parse error"):
        list(DocumentSource(str(tmp_path / "bad.jsonl")).documents())
    (tmp_path / "empty.jsonl").write_text("")
    assert list(DocumentSource(str(tmp_path / "empty.jsonl")).documents()) == []
