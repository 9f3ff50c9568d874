"""GPTDataModule: the Lightning hooks and dataloaders around a corpus.

corpus (gpt/data/corpus.py: Tiny Shakespeare, a text file, or a folder of .txt files) ->
tokenizer (characters, a tiktoken encoding, or a BPE trained on the training split) ->
ids, encoded once and cached -> first 90% train, last 10% validation -> windows of
block_size + 1 ids (gpt/data/datasets.py), x = ids[:-1], y = ids[1:]; or examples of their
natural length, padded per batch. Predict serves prompts (gpt/data/prompts.py).

A corpus of documents (.jsonl/.parquet files, a Hugging Face dataset: gpt/data/sources.py) is
tokenized by worker processes into shards (gpt/data/shards.py): the first val_tokens ids are the
validation split, the rest training windows. Every rank trains on its own windows and scores
its own share of the validation windows, each once.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from gpt.data.corpus import Corpus
from gpt.data.datasets import (
    EvalSampler,
    EvalWindows,
    PadBatch,
    ResumableLoader,
    ResumableSampler,
    TrainWindows,
    as_list,
    check_shards,
    example_splits,
    hold_out,
    split_text,
)
from gpt.data.finetuning import InstructionData, InstructionSet, PadExamples
from gpt.data.problems import ProblemData, ProblemSet
from gpt.data.prompts import prompt_items, read_prompts, unescape
from gpt.data.shards import SHARD_TOKENS, SPLITS
from gpt.data.sources import HubDataset
from gpt.data.templates import Template
from gpt.interop.checkpoint import read_tokenizer
from gpt.tokenizers import MASK, PAD, Tokenizer
from gpt.tokenizers.settings import CharSettings, TokenizerConfig

EXAMPLES = ("paragraphs", "lines")  # modes of natural-length examples, padded with <|pad|>


class GPTDataModule(L.LightningDataModule):
    """A corpus as windows of tokens (or examples of natural length), and prompts for predict."""

    def __init__(
        self,
        corpus: str = "shakespeare",
        extensions: list[str] = [".txt"],
        tokenizer: TokenizerConfig | None = None,
        data_dir: str = "data",
        block_size: int = 256,
        batch_size: int = 64,
        tokens_per_step: int | None = None,
        stride: int | None = None,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 1337,
        mode: Literal["windows", "paragraphs", "lines"] = "windows",
        objective: Literal["causal", "masked", "dpo", "grpo"] = "causal",
        prompt: str | None = None,
        prompts_file: str | None = None,
        num_samples: int = 1,
        tokenizer_from: str | None = None,
        text_field: str = "text",
        shard_tokens: int = SHARD_TOKENS,
        val_tokens: int | None = None,
        tokenize_workers: int | None = None,
        hub: HubDataset | None = None,
        instructions: InstructionData | None = None,
        problems: ProblemData | None = None,
        repeats: int = 1,
    ):
        """
        Args:
            corpus: "shakespeare" (found under data_dir, else downloaded), the path of a
                UTF-8 text file, a folder whose files with one of `extensions` (sorted by path,
                subfolders included) are the documents, joined with <|endoftext|>, or a glob of
                files such as "src/**/*.py". Or documents, tokenized into shards: a
                .jsonl/.parquet file or a folder of them (see also hub).
            extensions: A folder corpus's documents: its files with these endings, e.g. [.py, .md].
            tokenizer: Which tokenizer: {kind: char} (unset: the corpus's characters),
                {kind: tiktoken, encoding: gpt2}, or {kind: bpe, vocab_size: 4096} trained on the
                training split (saved under data_dir/tokenizers and reused). Each kind has only its
                own settings.
            data_dir: Where downloaded corpora, trained tokenizers and token caches are kept.
            block_size: Tokens of context per training example (linked from model.block_size).
            batch_size: Examples per batch (per device): the micro-batch when tokens_per_step is set.
            tokens_per_step: Tokens per optimizer step over all devices (GPT-2/nanoGPT: 524,288).
                Gradient accumulation follows: tokens_per_step / (devices x batch_size x
                block_size) micro-batches, which must be whole. Unset: one batch per device.
            stride: Distance between the starts of consecutive training windows; 1 uses
                every offset, block_size gives non-overlapping windows. Unset: 1 for a text
                corpus, block_size for a corpus of documents (its shards).
            val_fraction: The last fraction of the corpus held out for validation.
            num_workers: DataLoader worker processes. 0 (load in the main process) is fastest
                on a small CPU machine: workers compete with the model for the same cores.
            seed: Seed of the training-set shuffle.
            mode: "windows": every block_size-token window of the running text. "paragraphs"
                (the blocks between blank lines: a speech of Tiny Shakespeare) or "lines":
                examples of their natural length, cut to block_size tokens and padded per
                batch with <|pad|>, which attention and the loss never see.
            objective: The model's objective (linked from model.objective): "masked" needs a
                tokenizer with <|mask|>; the char tokenizer gains <|pad|> and <|mask|> for it;
                "dpo" needs preference records (data.instructions), "grpo" problems (data.problems).
            prompt: Text that predict continues. Escape sequences such as \\n are allowed.
                Without a prompt or prompts_file, text starts after the tokenizer's
                <|endoftext|>, or after a newline when it has none.
            prompts_file: Prompts for predict, from a file: one a line (escapes allowed), or
                in a .jsonl file one JSON value a line, a string or {"prompt": ...}.
            num_samples: Samples predict draws from each prompt.
            tokenizer_from: A checkpoint whose tokenizer to use instead of building one from
                the corpus. main.py sets it to --ckpt_path, so a checkpoint always brings
                its own tokenizer.
            text_field: The field of a .jsonl/.parquet/hub record that holds its text.
            shard_tokens: A corpus of documents: ids per shard (llm.c: 100M).
            val_tokens: A corpus of documents: the first ids, held out for validation (default:
                one shard; a corpus smaller than a shard holds out its first val_fraction).
            tokenize_workers: Processes that tokenize a corpus of documents (default: every core).
            hub: A Hugging Face hub dataset to stream as the corpus, in place of data.corpus:
                {path: HuggingFaceFW/fineweb, name: sample-10BT, split: train}.
            instructions: Fine-tune on instruction, chat or preference records in place of a
                corpus: {path: alpaca.json, template: chat} (gpt/data/finetuning.py); the
                held-out share is data.val_fraction of the records, shuffled with data.seed.
            problems: Reinforcement learning on problems a reward checks, in place of a corpus:
                {path: train.jsonl, reward: gpt.eval.checkers:exact_match} (gpt/data/problems.py).
            repeats: Each training batch this many times in a row (linked from model.grpo.updates).
        """
        super().__init__()
        check_settings(locals())
        self.corpus = Corpus(hub or corpus, data_dir, text_field, tuple(extensions))
        self.sharded = self.corpus.documents is not None
        if self.sharded and mode != "windows":
            raise ValueError(f"data.mode {mode} needs a text corpus; a corpus of documents trains on windows")
        self.tokenizer_config = tokenizer or CharSettings()
        self.block_size, self.batch_size, self.tokens_per_step = block_size, batch_size, tokens_per_step
        self.stride = stride or (block_size if self.sharded else 1)
        self.shard_tokens, self.val_tokens, self.tokenize_workers = shard_tokens, val_tokens, tokenize_workers
        self.val_fraction, self.num_workers, self.seed = val_fraction, num_workers, seed
        self.mode, self.objective = ("instructions" if instructions else "problems" if problems else mode), objective
        self.finetuning = InstructionSet(instructions, pairs=objective == "dpo") if instructions else None
        self.finetuning = ProblemSet(problems) if problems else self.finetuning
        self.prompt, self.prompts_file, self.num_samples = prompt, prompts_file, num_samples
        self.tokenizer_from, self.repeats = tokenizer_from, repeats
        self._tokenizer: Tokenizer | None = None
        self.train_ids: np.ndarray | list[np.ndarray] | None = None
        self.val_ids: np.ndarray | list[np.ndarray] | None = None
        self.val_chars_per_token: float | None = None

    # ---- the tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        """The checkpoint's tokenizer if one is given, else the one `data.tokenizer` names."""
        if self._tokenizer is None:
            if self.tokenizer_from:
                self._tokenizer = read_tokenizer(self.tokenizer_from)
            else:
                # Padded examples and the masked objective need <|pad|> and <|mask|>.
                special = (PAD, MASK) if self.objective == "masked" or self.mode in EXAMPLES else ()
                self._tokenizer = self.corpus.tokenizer(self.tokenizer_config, special, self.val_fraction)
            if self.finetuning is not None:  # with the template's tokens: new ones grow the model
                self._tokenizer = self.finetuning.tokenizer(self._tokenizer)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        # Read when the CLI links it to the model: the first moment the tokenizer is known,
        # so a tokenizer that cannot serve the objective or the mode is refused here.
        check_special_tokens(self.tokenizer, self.objective, self.mode)
        return self.tokenizer.vocab_size

    # ---- Lightning hooks

    def prepare_data(self) -> None:
        # Runs on one process per node before setup: download and tokenize there, once.
        if self.trainer is not None and self.trainer.state.fn == "predict":
            return  # predict needs only the prompt and the checkpoint's tokenizer
        check_problems(self.objective, self.finetuning)
        if self.finetuning is not None:
            self.finetuning.read()  # a hub dataset: downloaded once, before setup
        elif self.sharded:
            self.corpus.write_shards(self.tokenizer, self.shard_tokens, self.val_tokens, self.tokenize_workers)
        else:
            self.corpus.encode(self.tokenizer)

    def setup(self, stage: str) -> None:
        if stage == "predict" or self.train_ids is not None:
            return
        if self.finetuning is not None:
            args = (self.tokenizer, self.block_size, self.val_fraction, self.seed)
            self.train_ids, self.val_ids = self.finetuning.splits(*args)
            return
        if self.mode != "windows":
            self.setup_examples()
            return
        if self.sharded:
            train, val = (self.corpus.shards(self.tokenizer, s, self.shard_tokens, self.val_tokens) for s in SPLITS)
            if self.val_tokens is None and not train:  # smaller than a shard: hold out a share of it
                train, val = hold_out(val, self.val_fraction, self.block_size)
            check_shards(train, val, self.block_size, self.stride)
        else:
            train, val = split_text(self.corpus.ids(self.tokenizer), self.val_fraction, self.block_size)
        self.train_ids, self.val_ids = train, val
        # Characters per scored validation token (from the first million), so that losses
        # of different tokenizers compare as bits per character.
        scored = (self.val_ids[0] if self.sharded else self.val_ids)[1 : 1 + 2**20]
        self.val_chars_per_token = len(self.tokenizer.decode(scored.tolist())) / len(scored)

    def setup_examples(self) -> None:
        """mode paragraphs or lines: the examples, each cut to what one example holds (one
        more token for causal, whose x and y are shifted by one), split 90/10."""
        keep = self.block_size + (1 if self.objective == "causal" else 0)
        text = "".join(self.corpus.blocks())
        self.train_ids, self.val_ids = example_splits(text, self.mode, self.tokenizer, keep, self.val_fraction)
        n_tokens = sum(len(e) for e in self.val_ids)
        self.val_chars_per_token = sum(len(self.tokenizer.decode(e.tolist())) for e in self.val_ids) / n_tokens

    @property
    def template(self) -> Template | None:
        """Fine-tuning: how a chat becomes a prompt (kept in checkpoints), chosen with the tokenizer."""
        return self.finetuning.template if self.finetuning is not None and self.tokenizer else None

    def collate(self) -> PadBatch | PadExamples | None:
        if self.finetuning is not None:
            return self.finetuning.collate(self.tokenizer)
        if self.mode == "windows":
            return None
        return PadBatch(self.tokenizer.special_tokens[PAD], shift=self.objective == "causal")

    def train_dataloader(self) -> DataLoader:
        windows = self.mode == "windows"
        dataset = TrainWindows(self.train_ids, self.block_size, self.stride) if windows else self.train_ids
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        grouping = self.finetuning.grouping(self.train_ids, self.batch_size * world_size) if self.finetuning else {}
        grouping |= {"repeats": self.repeats, "batch": self.batch_size}  # GRPO's updates on one batch of rollouts
        loader = ResumableLoader(
            dataset,
            collate_fn=self.collate(),
            batch_size=self.batch_size,
            sampler=ResumableSampler(len(dataset), self.seed, rank, world_size, self.current_epoch, **grouping),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # the workers' seed: never the global RNG
        )
        loader.position = self.data_position
        return loader

    def current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def data_position(self) -> dict[str, int]:
        """The epoch under way and the batches of it the model has trained on (from the training
        loop: the loader runs a batch ahead of the model)."""
        if self.trainer is None:
            return {"epoch": 0, "batches": 0}
        epoch, batches = self.trainer.fit_loop.epoch_progress, self.trainer.fit_loop.epoch_loop.batch_progress
        return {"epoch": max(epoch.current.started - 1, 0), "batches": batches.current.processed}

    def val_dataloader(self) -> DataLoader:
        if self.mode != "windows":
            dataset = self.val_ids
        elif self.sharded:
            dataset = ConcatDataset([EvalWindows(shard, self.block_size) for shard in self.val_ids])
        else:
            dataset = EvalWindows(self.val_ids, self.block_size)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return DataLoader(
            dataset,
            sampler=EvalSampler(len(dataset), rank, world_size),  # each window on one rank, once
            collate_fn=self.collate(),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),  # the workers' seed: never the global RNG
        )

    def test_dataloader(self) -> DataLoader:
        # Tiny Shakespeare has no separate test split (nanoGPT neither): test scores the
        # held-out validation text.
        return self.val_dataloader()

    def prompts(self) -> list[str | None]:
        """The prompts to continue, in order; None stands for "no prompt"."""
        if self.prompts_file is not None:
            return read_prompts(self.prompts_file)
        return [unescape(self.prompt) if self.prompt is not None else None]

    def predict_dataloader(self) -> DataLoader:
        # Every sample of every prompt, in order; the model batches those of one length together.
        items = prompt_items(self.prompts(), self.num_samples)
        return DataLoader(items, batch_size=self.batch_size, collate_fn=as_list)


def check_settings(s: dict) -> None:
    """Refuse data settings no run can use, naming the value."""
    for name, value in (
        ("block_size", s["block_size"]),
        ("batch_size", s["batch_size"]),
        ("stride", s["stride"]),
        ("num_samples", s["num_samples"]),
        ("tokens_per_step", s["tokens_per_step"]),
        ("shard_tokens", s["shard_tokens"]),
        ("tokenize_workers", s["tokenize_workers"]),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0.0 < s["val_fraction"] < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {s['val_fraction']}")
    if s["prompt"] == "":
        raise ValueError('the prompt is empty; give at least one character, e.g. --data.prompt "\\n"')
    if s["prompt"] is not None and s["prompts_file"] is not None:
        raise ValueError("give data.prompt or data.prompts_file, not both")
    if s["problems"] is not None and (s["objective"] != "grpo" or s["instructions"] is not None):
        raise ValueError("data.problems are for model.objective grpo, in place of data.instructions")
    if s["problems"] is not None and not s["tokenizer_from"]:
        raise ValueError(
            "data.problems: reinforcement learning tunes a chat model of ours, with its tokenizer and template: "
            "give model.init_from a checkpoint (or run folder) fine-tuned with data.instructions"
        )
    if s["val_tokens"] is not None and s["val_tokens"] < s["block_size"] + 1:
        raise ValueError(f"val_tokens must be at least block_size + 1 = {s['block_size'] + 1}, got {s['val_tokens']}")


def check_problems(objective: str, finetuning: InstructionSet | ProblemSet | None) -> None:
    """GRPO's data is problems (for fit, validate and test; predict needs none)."""
    if objective == "grpo" and not isinstance(finetuning, ProblemSet):
        raise ValueError("model.objective grpo learns from problems a reward checks: give data.problems")


def check_special_tokens(tokenizer: Tokenizer, objective: str, mode: str) -> None:
    """Refuse a tokenizer that cannot serve the objective or the mode: masked needs <|mask|>,
    examples of their own length <|pad|>."""
    needs = {MASK: objective == "masked", PAD: mode in EXAMPLES}
    for token, needed in needs.items():
        if needed and token not in tokenizer.special_tokens:
            why = "objective masked" if token == MASK else f"data.mode {mode}"
            raise ValueError(
                f"{why} needs a {token} token, which the tokenizer ({tokenizer!r}) lacks; use "
                "data.tokenizer.kind char or bpe"
            )
