"""GPTDataModule: find or download a corpus, tokenize it once, serve windows of tokens.

text -> tokenizer.encode (once, cached as a flat uint16 file keyed by corpus content and
tokenizer) -> first 90% train, last 10% validation -> windows of block_size + 1 ids,
x = ids[:-1], y = ids[1:].
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from gpt.tokenizers import CharTokenizer, Tokenizer, tokenizer_from_state

IGNORE_INDEX = -100  # targets with this value are not scored (cross_entropy's default)

# Tiny Shakespeare, as Karpathy's char-rnn repository serves it.
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SIZE = 1_115_394
SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"


# --------------------------------------------------------------------------- corpus files


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_shakespeare(path: Path, url: str = SHAKESPEARE_URL) -> Path:
    """Download Tiny Shakespeare to `path`, check its size and md5, write it atomically."""
    rank_zero_info(f"Downloading Tiny Shakespeare from {url} to {path}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as e:
        raise FileNotFoundError(
            f"could not download Tiny Shakespeare from {url} ({e}); without internet, put the file at "
            f"{path} or pass its path with --data.corpus PATH"
        ) from None
    md5 = hashlib.md5(data).hexdigest()
    if len(data) != SHAKESPEARE_SIZE or md5 != SHAKESPEARE_MD5:
        raise ValueError(
            f"downloaded Tiny Shakespeare is {len(data)} bytes with md5 {md5}; expected "
            f"{SHAKESPEARE_SIZE} bytes with md5 {SHAKESPEARE_MD5}. Nothing was written."
        )
    _write_atomically(path, data)
    return path


# --------------------------------------------------------------------------- datasets


class TrainWindows(Dataset):
    """Windows of block_size + 1 ids starting every `stride` ids (stride 1 = every offset)."""

    def __init__(self, ids: np.ndarray, block_size: int, stride: int = 1):
        self.ids, self.block_size = ids, block_size
        self.offsets = range(0, len(ids) - block_size, stride)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.offsets[i]
        chunk = torch.from_numpy(self.ids[o : o + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]


class EvalWindows(Dataset):
    """Non-overlapping windows that score every target of `ids` exactly once.

    The tail that does not fill a whole window gets one more window aligned to the end of
    the split; its targets already scored by the previous window are set to IGNORE_INDEX.
    So the mean loss over all scored targets is the exact loss of the whole split.
    """

    def __init__(self, ids: np.ndarray, block_size: int):
        self.ids, self.block_size = ids, block_size
        n_targets = len(ids) - 1
        full = n_targets // block_size
        self.items = [(i * block_size, 0) for i in range(full)]  # (offset, targets to ignore)
        if n_targets % block_size:
            last = n_targets - block_size
            self.items.append((last, full * block_size - last))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        o, n_ignore = self.items[i]
        chunk = torch.from_numpy(self.ids[o : o + self.block_size + 1].astype(np.int64))
        x, y = chunk[:-1], chunk[1:].clone()
        y[:n_ignore] = IGNORE_INDEX
        return x, y


def unescape(text: str) -> str:
    """Turn backslash escapes typed on a command line ("\\n") into the characters they name."""
    if "\\" not in text:
        return text
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _as_list(batch: list[str]) -> list[str]:
    return batch


# --------------------------------------------------------------------------- data module


class GPTDataModule(L.LightningDataModule):
    """Tiny Shakespeare (or any text file) as windows of tokens, and prompts for predict."""

    def __init__(
        self,
        corpus: str = "shakespeare",
        data_dir: str = "data",
        block_size: int = 256,
        batch_size: int = 64,
        stride: int = 1,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 1337,
        prompt: str = "\n",
        num_samples: int = 1,
        tokenizer_from: Optional[str] = None,
    ):
        """
        Args:
            corpus: "shakespeare" (found under data_dir, else downloaded) or the path of a
                UTF-8 text file.
            data_dir: Where downloaded corpora and token caches are kept.
            block_size: Tokens of context per training example (linked from model.block_size).
            batch_size: Examples per batch (per device).
            stride: Distance between the starts of consecutive training windows; 1 uses
                every offset, block_size gives non-overlapping windows.
            val_fraction: The last fraction of the corpus held out for validation.
            num_workers: DataLoader worker processes. 0 (load in the main process) is fastest
                on a small CPU machine: workers compete with the model for the same cores.
            seed: Seed of the training-set shuffle.
            prompt: Text that predict continues. Escape sequences such as \\n are allowed.
            num_samples: Samples predict draws from the prompt.
            tokenizer_from: A checkpoint whose tokenizer to use instead of building one from
                the corpus. main.py sets it to --ckpt_path, so a checkpoint always brings
                its own tokenizer.
        """
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if prompt == "":
            raise ValueError('the prompt is empty; give at least one character, e.g. --data.prompt "\\n"')
        self.corpus = corpus
        self.data_dir = Path(data_dir)
        self.block_size = block_size
        self.batch_size = batch_size
        self.stride = stride
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.seed = seed
        self.prompt = prompt
        self.num_samples = num_samples
        self.tokenizer_from = tokenizer_from
        self._tokenizer: Optional[Tokenizer] = None
        self.train_ids: Optional[np.ndarray] = None
        self.val_ids: Optional[np.ndarray] = None

    # ---- corpus and tokenizer

    def corpus_path(self, download: bool = True) -> Path:
        """The corpus file: the user's path, else a cached copy under data_dir, else a download."""
        if self.corpus == "shakespeare":
            path = self.data_dir / "tinyshakespeare" / "input.txt"
            if not path.is_file():
                if not download:
                    raise FileNotFoundError(f"Tiny Shakespeare not found at {path}")
                download_shakespeare(path)
            return path
        path = Path(self.corpus).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"corpus file {str(path)!r} does not exist; pass the path of a UTF-8 text file "
                "with --data.corpus PATH, or 'shakespeare' for Tiny Shakespeare"
            )
        return path

    def read_corpus(self) -> str:
        path = self.corpus_path()
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"corpus file {str(path)!r} is not UTF-8 text ({e})") from None

    @property
    def tokenizer(self) -> Tokenizer:
        """The checkpoint's tokenizer if one is given, else characters of the corpus."""
        if self._tokenizer is None:
            if self.tokenizer_from:
                self._tokenizer = load_tokenizer_from_checkpoint(self.tokenizer_from)
            else:
                self._tokenizer = CharTokenizer.from_text(self.read_corpus())
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def ids_path(self) -> Path:
        """Cache file of the encoded corpus, keyed by corpus content and tokenizer."""
        corpus = self.corpus_path()
        tok = json.dumps(self.tokenizer.state_dict(), sort_keys=True).encode()
        key = f"{md5_of(corpus)[:12]}-{self.tokenizer.kind}-{hashlib.md5(tok).hexdigest()[:8]}"
        return self.data_dir / "cache" / f"{corpus.stem}-{key}.uint16"

    def encode_corpus(self) -> Path:
        """Tokenize the corpus once; later runs memory-map the cached ids."""
        path = self.ids_path()
        if path.is_file():
            return path
        if self.tokenizer.vocab_size > 2**16:
            raise ValueError(f"vocab_size {self.tokenizer.vocab_size} does not fit in uint16 ids")
        ids = np.array(self.tokenizer.encode(self.read_corpus()), dtype=np.uint16)
        rank_zero_info(f"Encoded {self.corpus_path()} into {len(ids):,} tokens, cached at {path}")
        _write_atomically(path, ids.tobytes())
        return path

    # ---- Lightning hooks

    def prepare_data(self) -> None:
        # Runs on one process per node before setup: download and tokenize there, once.
        if self.trainer is not None and self.trainer.state.fn == "predict":
            return  # predict needs only the prompt and the checkpoint's tokenizer
        self.encode_corpus()

    def setup(self, stage: str) -> None:
        if stage == "predict" or self.train_ids is not None:
            return
        ids = np.memmap(self.encode_corpus(), dtype=np.uint16, mode="r")
        n_train = int(len(ids) * (1 - self.val_fraction))
        self.train_ids, self.val_ids = ids[:n_train], ids[n_train:]
        need = self.block_size + 1
        for name, split in (("training", self.train_ids), ("validation", self.val_ids)):
            if len(split) < need:
                raise ValueError(
                    f"the corpus has {len(ids):,} tokens, so its {name} split has {len(split):,}: fewer than "
                    f"block_size + 1 = {need} needed for one example. Use a longer corpus or a smaller "
                    "--model.block_size"
                )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            TrainWindows(self.train_ids, self.block_size, self.stride),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            EvalWindows(self.val_ids, self.block_size),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )

    def test_dataloader(self) -> DataLoader:
        # Tiny Shakespeare has no separate test split (nanoGPT neither): test scores the
        # held-out validation text.
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        prompt = unescape(self.prompt)
        return DataLoader([prompt] * self.num_samples, batch_size=self.num_samples, collate_fn=_as_list)


def check_checkpoint(path: str) -> None:
    """Refuse a path that is not a checkpoint before torch.load does, with a plain message.

    torch.save writes a zip archive; checking its directory reads no tensors.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; check --ckpt_path")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a PyTorch checkpoint (no zip archive in it: another kind of file, "
            "or a checkpoint cut short while copying); check --ckpt_path"
        )


def load_tokenizer_from_checkpoint(path: str) -> Tokenizer:
    """The tokenizer saved inside a checkpoint by LitGPT.on_save_checkpoint."""
    check_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "tokenizer" not in checkpoint:
        raise ValueError(f"checkpoint {path!r} has no tokenizer; was it written by this project's LitGPT?")
    return tokenizer_from_state(checkpoint["tokenizer"])
