"""Writing files so that a crash never leaves half of one, and checksums of what was written.

Every file the project writes (token caches, downloaded corpora, tokenizers, exported
models, predictions) goes through `atomic_write`: the bytes go to a temporary file in the
same folder, which is renamed over the target only once it is complete. A reader sees the
old file or the new one, never a mixture, and a failure leaves the old one untouched.

Plain Python, no Lightning.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def umask() -> int:
    """The process's umask, read from /proc where Linux shows it: the only other way to read
    it is to set it, which would, for a moment, change the mode of a file another thread makes."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration):
        mask = os.umask(0)
        os.umask(mask)
        return mask


def mode_of(path: Path) -> int:
    """The permissions open(path, "w") would give: the file's own if it exists, else 0666 less
    the umask (mkstemp makes its files 0600: a teammate or a server could not read them)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, for a writer that opens the file by name (gguf's
    GGUFWriter does): flushed to disk and renamed to `path` when the block ends without an
    error; on an error it is deleted and `path` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so the rename stays on one filesystem and is atomic.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it visible
        os.chmod(tmp, mode_of(path))  # mkstemp's 0600 would keep a teammate or a server from reading it
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            # Say which file, and that the old one is intact: "[Errno 28] No space left on
            # device" alone does not tell a user what to free or where to write instead.
            raise OSError(
                e.errno,
                f"{e.strerror} while writing {path} (its previous version, if any, is untouched): free some space",
            ) from e
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """A file to write `path` through (mode "wb" or "w"): a temporary file beside it,
    renamed to `path` when the block ends without an error (atomic_path)."""
    text_encoding = encoding if "b" not in mode else None
    with atomic_path(path) as tmp, os.fdopen(os.open(tmp, os.O_WRONLY), mode, encoding=text_encoding) as f:
        yield f


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def digest_of(path: str | Path, algorithm: str) -> str:
    """The hex digest of a file's bytes by hashlib's algorithm (md5, sha256), read a megabyte at a time."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def md5_of(path: str | Path) -> str:
    """What the caches and shards are checked by: not a defence, a check for damage."""
    return digest_of(path, "md5")
