"""GPTDataModule: find or download a corpus, tokenize it once, serve windows of tokens.

corpus (Tiny Shakespeare, a text file, or a folder of .txt files joined by <|endoftext|>)
-> tokenizer (characters, a tiktoken encoding, or a BPE trained on the training split)
-> ids, encoded once in batches and cached as a flat uint16/uint32 file keyed by corpus
content and tokenizer -> first 90% train, last 10% validation -> windows of
block_size + 1 ids, x = ids[:-1], y = ids[1:].
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator, Literal, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gpt.masking import IGNORE_INDEX  # targets with this value are not scored
from gpt.tokenizers import (
    ENDOFTEXT,
    MASK,
    PAD,
    SPLIT_PATTERNS,
    BPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    TokenizerConfig,
    tokenizer_from_state,
)

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


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to write `path` through: a temporary file beside it, renamed to `path` only
    when the block finishes. Readers never see half a file; a failure leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
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
    with atomic_writer(path) as f:
        f.write(data)
    return path


# --------------------------------------------------------------------------- corpus text

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


def read_blocks(path: Path, block_chars: Optional[int] = None) -> Iterator[str]:
    """The text of `path` in blocks of about block_chars (default BLOCK_CHARS) characters,
    cut at `safe_cut`."""
    block_chars = block_chars or BLOCK_CHARS
    carry = ""
    try:
        with open(path, encoding="utf-8") as f:
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


def id_dtype(vocab_size: int) -> type:
    """The smallest unsigned integer type that holds every id."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


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


def _as_list(batch: list) -> list:
    return batch


class PadBatch:
    """Collate examples of different lengths into (x, y, real): padded on the right with
    <|pad|> to the longest, real marking the tokens that are not padding. Causal: x and y
    are the example shifted by one, y IGNORE_INDEX at padding. Masked: y = x (the model
    chooses what to hide)."""

    def __init__(self, pad_id: int, shift: bool):
        self.pad_id, self.shift = pad_id, shift

    def __call__(self, examples: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = [len(e) - 1 if self.shift else len(e) for e in examples]
        T = max(lengths)
        x = torch.full((len(examples), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
        for row, (e, n) in enumerate(zip(examples, lengths)):
            e = torch.from_numpy(np.asarray(e, dtype=np.int64))
            x[row, :n] = e[:n]
            y[row, :n] = e[1 : n + 1] if self.shift else e[:n]
        real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
        return x, y, real


# --------------------------------------------------------------------------- data module


class GPTDataModule(L.LightningDataModule):
    """A corpus as windows of tokens, and prompts for predict."""

    def __init__(
        self,
        corpus: str = "shakespeare",
        tokenizer: TokenizerConfig = TokenizerConfig(),
        data_dir: str = "data",
        block_size: int = 256,
        batch_size: int = 64,
        stride: int = 1,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 1337,
        mode: Literal["windows", "paragraphs", "lines"] = "windows",
        objective: Literal["causal", "masked"] = "causal",
        prompt: Optional[str] = None,
        prompts_file: Optional[str] = None,
        num_samples: int = 1,
        tokenizer_from: Optional[str] = None,
    ):
        """
        Args:
            corpus: "shakespeare" (found under data_dir, else downloaded), the path of a
                UTF-8 text file, or a folder whose .txt files (sorted by path, subfolders
                included) are the documents, joined with <|endoftext|>.
            tokenizer: Which tokenizer: characters, a tiktoken encoding, or a BPE trained on
                the training split (saved under data_dir/tokenizers and reused).
            data_dir: Where downloaded corpora, trained tokenizers and token caches are kept.
            block_size: Tokens of context per training example (linked from model.block_size).
            batch_size: Examples per batch (per device).
            stride: Distance between the starts of consecutive training windows; 1 uses
                every offset, block_size gives non-overlapping windows.
            val_fraction: The last fraction of the corpus held out for validation.
            num_workers: DataLoader worker processes. 0 (load in the main process) is fastest
                on a small CPU machine: workers compete with the model for the same cores.
            seed: Seed of the training-set shuffle.
            mode: "windows": every block_size-token window of the running text. "paragraphs"
                (the blocks between blank lines: a speech of Tiny Shakespeare) or "lines":
                examples of their natural length, cut to block_size tokens and padded per
                batch with <|pad|>, which attention and the loss never see.
            objective: The model's objective (linked from model.objective): "masked" needs a
                tokenizer with <|mask|>; the char tokenizer gains <|pad|> and <|mask|> for it.
            prompt: Text that predict continues. Escape sequences such as \\n are allowed.
                Without a prompt or prompts_file, text starts after the tokenizer's
                <|endoftext|>, or after a newline when it has none.
            prompts_file: Prompts for predict, from a file: one a line (escapes allowed), or
                in a .jsonl file one JSON value a line, a string or {"prompt": ...}.
            num_samples: Samples predict draws from each prompt.
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
        if prompt is not None and prompts_file is not None:
            raise ValueError("give data.prompt or data.prompts_file, not both")
        self.corpus = corpus
        self.tokenizer_config = tokenizer
        self.data_dir = Path(data_dir)
        self.block_size = block_size
        self.batch_size = batch_size
        self.stride = stride
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.seed = seed
        self.mode, self.objective = mode, objective
        self.prompt = prompt
        self.prompts_file = prompts_file
        self.num_samples = num_samples
        self.tokenizer_from = tokenizer_from
        self._tokenizer: Optional[Tokenizer] = None
        self._corpus_key: Optional[str] = None
        self.train_ids: Optional[np.ndarray] = None
        self.val_ids: Optional[np.ndarray] = None
        self.val_chars_per_token: Optional[float] = None

    # ---- corpus

    def corpus_path(self, download: bool = True) -> Path:
        """The corpus file or folder: the user's path, else Tiny Shakespeare under data_dir,
        else a download."""
        if self.corpus == "shakespeare":
            path = self.data_dir / "tinyshakespeare" / "input.txt"
            if not path.is_file():
                if not download:
                    raise FileNotFoundError(f"Tiny Shakespeare not found at {path}")
                download_shakespeare(path)
            return path
        path = Path(self.corpus).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"corpus file {str(path)!r} does not exist; pass the path of a UTF-8 text file or of a folder "
                "of .txt files with --data.corpus PATH, or 'shakespeare' for Tiny Shakespeare"
            )
        return path

    def corpus_files(self) -> list[Path]:
        """The documents of the corpus: one file, or the .txt files of a folder in path order."""
        path = self.corpus_path()
        if path.is_file():
            return [path]
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise FileNotFoundError(f"corpus folder {str(path)!r} has no .txt files; put the documents there as .txt")
        return files

    def corpus_key(self) -> str:
        """A hash of the corpus content (and, for a folder, of its documents' names and order)."""
        if self._corpus_key is None:
            path, files = self.corpus_path(), self.corpus_files()
            if path.is_file():
                self._corpus_key = md5_of(path)[:12]
            else:
                listing = "\n".join(f"{f.relative_to(path).as_posix()} {md5_of(f)}" for f in files)
                self._corpus_key = hashlib.md5(listing.encode()).hexdigest()[:12]
        return self._corpus_key

    def is_folder(self) -> bool:
        return self.corpus_path().is_dir()

    def text_blocks(self, fraction: float = 1.0) -> Iterator[str]:
        """The corpus text in blocks, documents one after the other, up to `fraction` of
        its bytes. (A block never spans two documents.)"""
        files = self.corpus_files()
        budget = fraction * sum(f.stat().st_size for f in files)
        for f in files:
            for block in read_blocks(f):
                size = len(block.encode("utf-8"))
                if size >= budget:
                    yield block.encode("utf-8")[: int(budget)].decode("utf-8", errors="ignore")
                    return
                budget -= size
                yield block

    # ---- tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        """The checkpoint's tokenizer if one is given, else the one `data.tokenizer` names."""
        if self._tokenizer is None:
            if self.tokenizer_from:
                self._tokenizer = load_tokenizer_from_checkpoint(self.tokenizer_from)
            else:
                self._tokenizer = self.build_tokenizer()
        return self._tokenizer

    def build_tokenizer(self) -> Tokenizer:
        config = self.tokenizer_config
        if config.kind == "tiktoken":
            return TiktokenTokenizer(config.encoding)
        if config.kind == "bpe":
            return BPETokenizer.load(config.path) if config.path else self.trained_bpe()
        # Characters of the whole corpus; a folder's documents also need <|endoftext|>.
        chars: set[str] = set()
        for block in self.text_blocks():
            chars.update(block)
        if not chars:
            raise ValueError(f"corpus {str(self.corpus_path())!r} is empty")
        special = (ENDOFTEXT,) if self.is_folder() else ()
        if self.objective == "masked" or self.mode != "windows":
            special += (PAD, MASK)  # ids after the corpus's characters
        return CharTokenizer("".join(sorted(chars)), special_tokens=special)

    def bpe_path(self) -> Path:
        c = self.tokenizer_config
        name = f"bpe-{self.corpus_path().stem}-{self.corpus_key()}-{c.vocab_size}-{c.pattern}-val{self.val_fraction}.json"
        return self.data_dir / "tokenizers" / name

    def trained_bpe(self) -> BPETokenizer:
        """A BPE trained on the training split (the first 1 - val_fraction of the corpus
        bytes), saved, and reused while corpus and settings stay the same."""
        path = self.bpe_path()
        if path.is_file():
            return BPETokenizer.load(path)
        c = self.tokenizer_config
        rank_zero_info(f"Training a {c.vocab_size}-token BPE on the training split of {self.corpus_path()}")
        tokenizer = BPETokenizer.train(self.text_blocks(1 - self.val_fraction), c.vocab_size, SPLIT_PATTERNS[c.pattern])
        tokenizer.save(path)
        rank_zero_info(f"Saved the BPE tokenizer to {path}")
        return tokenizer

    @property
    def vocab_size(self) -> int:
        # Read when the CLI links it to the model: the first moment the tokenizer is known,
        # so a tokenizer that cannot serve the objective or the mode is refused here.
        needs = {MASK: self.objective == "masked", PAD: self.mode != "windows"}
        for token, needed in needs.items():
            if needed and token not in self.tokenizer.special_tokens:
                why = "objective masked" if token == MASK else f"data.mode {self.mode}"
                raise ValueError(
                    f"{why} needs a {token} token, which the tokenizer ({self.tokenizer!r}) lacks; use "
                    "data.tokenizer.kind char or bpe"
                )
        return self.tokenizer.vocab_size

    # ---- token ids

    def ids_path(self) -> Path:
        """Cache file of the encoded corpus, keyed by corpus content and tokenizer identity."""
        tok = self.tokenizer
        dtype = np.dtype(id_dtype(tok.vocab_size)).name
        key = f"{self.corpus_key()}-{tok.kind}-{tok.identity()}"
        return self.data_dir / "cache" / f"{self.corpus_path().stem}-{key}.{dtype}"

    def encode_corpus(self) -> Path:
        """Tokenize the corpus once, in batches of blocks, straight to the cache file.

        Memory holds one batch of text and its ids, never the whole corpus. Documents of a
        folder are joined with <|endoftext|>. Later runs memory-map the cached ids.
        """
        path = self.ids_path()
        if path.is_file():
            return path
        tok, files = self.tokenizer, self.corpus_files()
        dtype = id_dtype(tok.vocab_size)
        if len(files) > 1 and tok.eot_id is None:
            raise ValueError(f"{tok!r} has no {ENDOFTEXT} token to join the documents of a folder corpus")
        n_tokens = 0
        total = sum(f.stat().st_size for f in files)
        with atomic_writer(path) as out, tqdm(total=total, unit="B", unit_scale=True,
                                              desc=f"Encoding {self.corpus_path().name}", disable=None) as bar:  # fmt: skip

            def write(ids) -> None:
                nonlocal n_tokens
                np.asarray(ids, dtype=dtype).tofile(out)
                n_tokens += len(ids)

            for i, f in enumerate(files):
                if i > 0:
                    write([tok.eot_id])  # documents are joined with <|endoftext|>
                blocks = read_blocks(f)
                while batch := list(itertools.islice(blocks, BATCH_BLOCKS)):
                    for ids in tok.encode_batch(batch):
                        write(ids)
                    bar.update(sum(len(b.encode("utf-8")) for b in batch))
        rank_zero_info(f"Encoded {self.corpus_path()} into {n_tokens:,} tokens with {tok!r}, cached at {path}")
        return path

    def load_ids(self) -> np.ndarray:
        path = self.encode_corpus()
        return np.memmap(path, dtype=id_dtype(self.tokenizer.vocab_size), mode="r")

    # ---- Lightning hooks

    def prepare_data(self) -> None:
        # Runs on one process per node before setup: download and tokenize there, once.
        if self.trainer is not None and self.trainer.state.fn == "predict":
            return  # predict needs only the prompt and the checkpoint's tokenizer
        self.encode_corpus()

    def examples(self) -> list[np.ndarray]:
        """The corpus as examples of their natural length (mode paragraphs or lines), each
        cut to the tokens one training example holds."""
        text = "".join(self.text_blocks())
        if self.mode == "paragraphs":
            pieces = [p.strip("\n") + "\n" for p in re.split(r"\n\s*\n", text)]
        else:
            pieces = [line + "\n" for line in text.splitlines()]
        pieces = [p for p in pieces if p.strip()]
        keep = self.block_size + (1 if self.objective == "causal" else 0)  # causal: x and y shifted by one
        ids = self.tokenizer.encode_batch(pieces)
        return [np.array(e[:keep], dtype=np.int64) for e in ids if len(e) >= 2]

    def setup(self, stage: str) -> None:
        if stage == "predict" or self.train_ids is not None:
            return
        if self.mode != "windows":
            examples = self.examples()
            n_train = int(len(examples) * (1 - self.val_fraction))
            self.train_ids, self.val_ids = examples[:n_train], examples[n_train:]
            if not self.train_ids or not self.val_ids:
                raise ValueError(f"the corpus has {len(examples)} {self.mode}: too few for a training and a validation split")
            n_tokens = sum(len(e) for e in self.val_ids)
            self.val_chars_per_token = sum(len(self.tokenizer.decode(e.tolist())) for e in self.val_ids) / n_tokens
            return
        ids = self.load_ids()
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
        # Characters per scored validation token (from the first million), so that losses
        # of different tokenizers compare as bits per character.
        scored = self.val_ids[1 : 1 + 2**20]
        self.val_chars_per_token = len(self.tokenizer.decode(scored.tolist())) / len(scored)

    def collate(self) -> Optional["PadBatch"]:
        if self.mode == "windows":
            return None
        return PadBatch(self.tokenizer.special_tokens[PAD], shift=self.objective == "causal")

    def train_dataloader(self) -> DataLoader:
        dataset = TrainWindows(self.train_ids, self.block_size, self.stride) if self.mode == "windows" else self.train_ids
        return DataLoader(
            dataset,
            collate_fn=self.collate(),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            EvalWindows(self.val_ids, self.block_size) if self.mode == "windows" else self.val_ids,
            collate_fn=self.collate(),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )

    def test_dataloader(self) -> DataLoader:
        # Tiny Shakespeare has no separate test split (nanoGPT neither): test scores the
        # held-out validation text.
        return self.val_dataloader()

    def prompts(self) -> list[Optional[str]]:
        """The prompts to continue, in order; None stands for "no prompt"."""
        if self.prompts_file is not None:
            return read_prompts(self.prompts_file)
        return [unescape(self.prompt) if self.prompt is not None else None]

    def predict_dataloader(self) -> DataLoader:
        # Every sample of every prompt, in order; LitGPT batches those of one length together.
        items = [
            {"index": i, "sample": j, "prompt": prompt}
            for i, prompt in enumerate(self.prompts())
            for j in range(self.num_samples)
        ]
        return DataLoader(items, batch_size=self.batch_size, collate_fn=_as_list)


def read_prompts(path: str) -> list[str]:
    """Prompts from a text file, one a line (escape sequences allowed; blank lines skipped),
    or from a .jsonl file, one JSON string or {"prompt": ...} object a line."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompts file {path!r} does not exist")
    prompts = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if file.suffix != ".jsonl":
            prompts.append(unescape(line))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not JSON ({e.msg})") from None
        prompt = value.get("prompt") if isinstance(value, dict) else value
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f'{path}, line {number}: expected a non-empty string or {{"prompt": "..."}}, got {line!r}')
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"prompts file {path!r} has no prompts")
    return prompts


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
