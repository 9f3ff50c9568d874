"""gpt/files.py: a file is replaced whole or not at all."""

import pytest

from gpt.files import atomic_write, md5_of, write_bytes, write_text


def test_a_finished_write_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    write_bytes(path, b"old")
    with atomic_write(path) as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"  # readers see the old file until the write is done
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "f.txt"
    write_text(path, "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write("half of the new")
            raise KeyboardInterrupt  # Ctrl-C in the middle
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_nothing_is_created_when_the_first_write_fails(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_a_written_file_is_readable_as_one_open_writes(tmp_path):
    write_text(tmp_path / "a.txt", "x")
    open(tmp_path / "b.txt", "w").close()
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode


def test_md5_of_a_file(tmp_path):
    write_text(tmp_path / "a.txt", "hello")
    assert md5_of(tmp_path / "a.txt") == "5d41402abc4b2a76b9719d911017c592"


def test_a_written_file_gets_the_mode_open_gives(tmp_path):
    """A new file: 0666 less the umask (not mkstemp's 0600, which a teammate or a server under
    another user could not read); a file replaced: its own mode, as open(path, "w") keeps it."""
    import os
    import stat

    umask = os.umask(0o027)
    try:
        write_text(tmp_path / "new.txt", "x")
        (tmp_path / "kept.txt").write_text("old")
        os.chmod(tmp_path / "kept.txt", 0o604)
        write_bytes(tmp_path / "kept.txt", b"new")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "kept.txt").stat().st_mode) == 0o604
