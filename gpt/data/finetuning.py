"""Fine-tuning data, from records to padded batches: the `data.instructions` settings, the
held-out split by records, each record encoded and fitted to the context, and the collate that
pads a batch to its longest example and scores the replies only.

    SFT   (x, y, attention_mask): y is IGNORE_INDEX at the prompt, the template and the padding,
          so the loss is the replies' alone (train_on_prompt scores the prompt too)
    DPO   the same for 2B rows: the B chosen replies, then the B rejected ones

Plain Python and torch, no Lightning.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from gpt.data.instructions import Encoded, Record, encode_record, read_hub_records, read_records
from gpt.data.sources import HubDataset
from gpt.data.templates import Message, Template, template
from gpt.model.masking import IGNORE_INDEX
from gpt.tokenizers.base import Tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstructionData:
    """Instruction, chat or preference records to fine-tune on (in place of data.corpus).

    Args:
        path: A .json (one array) or .jsonl (one a line) file of records: Alpaca's
            {instruction, input, output}, chats {messages: [{role, content}, ...]}, or either
            with {chosen, rejected} replies for preference tuning (model.objective dpo).
        hub: A Hugging Face dataset of such records, in place of path: {path: tatsu-lab/alpaca}.
        template: How records become text: alpaca (Alpaca's prompt), chat (<|user|> ... <|end|>
            turns; the tokenizer and the model's embedding gain the chat tokens), or auto: chat
            for a model that already has the chat tokens (tuned with them before) and for chat
            records, alpaca for Alpaca records.
        train_on_prompt: Score the prompt's and the template's tokens too, not only the replies.
        too_long: A record longer than the context: truncate (its end cut, the count said in the
            log; one with no reply left is left out) or refuse (an error naming the record).
    """

    path: str | None = None
    hub: HubDataset | None = None
    template: Literal["auto", "alpaca", "chat"] = "auto"
    train_on_prompt: bool = False
    too_long: Literal["truncate", "refuse"] = "truncate"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hub is None):
            raise ValueError("data.instructions needs one of path (a .json/.jsonl file) or hub (a dataset)")

    def records(self) -> list[Record]:
        return read_hub_records(self.hub) if self.hub is not None else read_records(self.path)

    def template_for(self, records: list[Record], tokenizer: Tokenizer) -> Template:
        if self.template != "auto":
            return template(self.template)
        has_chat_tokens = all(t in tokenizer.special_tokens for t in template("chat").special_tokens)
        return template("chat" if has_chat_tokens else records[0].format)


def split_records(records: list[Record], val_fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """A seeded shuffle of the records, the last val_fraction held out (at least one)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(records) * val_fraction))
    if len(records) - n_val < 1:
        raise ValueError(f"the instruction data has {len(records)} records: too few for a training and a held-out set")
    return [records[i] for i in order[:-n_val]], [records[i] for i in order[-n_val:]]


def fit_to_context(example: Encoded, length: int, too_long: str) -> Encoded | None:
    """The example cut to `length` tokens when longer (truncate), or refused; None when no
    reply token is left to learn."""
    if len(example.ids) > length:
        if too_long == "refuse":
            raise ValueError(
                f"{example.where}: the record is {len(example.ids):,} tokens, longer than the context of "
                f"{length - 1:,} (+1); give --data.instructions.too_long truncate, or a larger --model.block_size"
            )
        example = Encoded(example.ids[:length], example.trained[:length], example.where)
    return example if any(example.trained[1:]) else None


def build_examples(
    records: list[Record], tokenizer: Tokenizer, template: Template, block_size: int, too_long: str, pairs: bool
) -> list[list[Encoded]]:
    """Each record's example (or chosen and rejected pair), fitted to block_size + 1 tokens
    (the input and the targets shifted by one); those cut and those left out counted in the log."""
    out, cut, dropped = [], 0, 0
    for record in records:
        if pairs and record.chosen is None:
            raise ValueError(f"{record.where}: preference tuning needs 'chosen' and 'rejected' replies")
        encoded = encode_record(record, tokenizer, template)[: 2 if pairs else 1]
        fitted = [fit_to_context(e, block_size + 1, too_long) for e in encoded]
        cut += sum(len(e.ids) > block_size + 1 for e in encoded)
        if any(f is None for f in fitted):
            dropped += 1
            continue
        out.append(fitted)
    if cut:
        log.info(f"{cut:,} of {len(records):,} examples were longer than {block_size + 1} tokens: their ends were cut")
    if dropped:
        log.info(f"{dropped:,} examples had no reply left within the context and were left out")
    if not out:
        raise ValueError(f"no example has a reply within the context of {block_size} tokens: raise --model.block_size")
    return out


class PadExamples:
    """Collate examples (or pairs) into (x, y, attention_mask), padded on the right to the
    longest: x the ids, y the next ids where they are trained and IGNORE_INDEX elsewhere."""

    def __init__(self, pad_id: int, train_on_prompt: bool = False):
        self.pad_id, self.train_on_prompt = pad_id, train_on_prompt

    def __call__(self, batch: list[list[Encoded]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = [pair[k] for k in range(len(batch[0])) for pair in batch]  # chosen rows, then rejected
        T = max(len(e.ids) - 1 for e in rows)
        x = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
        for row, e in enumerate(rows):
            ids, n = torch.tensor(e.ids), len(e.ids) - 1
            scored = torch.ones(n, dtype=torch.bool) if self.train_on_prompt else torch.tensor(e.trained[1:])
            x[row, :n] = ids[:-1]
            y[row, :n] = torch.where(scored, ids[1:], IGNORE_INDEX)
        lengths = torch.tensor([len(e.ids) - 1 for e in rows])
        return x, y, torch.arange(T)[None, :] < lengths[:, None]


def lengths_of(examples: list[list[Encoded]]) -> list[int]:
    return [max(len(e.ids) for e in pair) for pair in examples]


def as_arrays(examples: list[list[Encoded]]) -> list[np.ndarray]:
    """The examples' ids alone, for what reads examples as arrays (chars per token)."""
    return [np.asarray(pair[0].ids) for pair in examples]


class InstructionSet:
    """The data of a fine-tuning run: its records, read once; their template; the tokenizer
    with the template's tokens; the held-out split; the collate."""

    def __init__(self, settings: InstructionData, pairs: bool):
        self.settings, self.pairs = settings, pairs
        self._records: list[Record] | None = None
        self.template: Template | None = None  # chosen with the tokenizer

    @property
    def records(self) -> list[Record]:
        return self.read()

    def read(self) -> list[Record]:
        """The records, read (a hub dataset downloaded) and checked the first time."""
        if self._records is None:
            self._records = self.settings.records()
        return self._records

    def tokenizer(self, base: Tokenizer) -> Tokenizer:
        """base with the template's special tokens (new ones: new ids); refused when it cannot
        write the template's text (a character tokenizer without '#', say)."""
        self.template = self.settings.template_for(self.records, base)
        tokenizer = base.with_special_tokens(self.template.special_tokens)
        markup = "".join(s.text for s in self.template.render([Message("user", "x"), Message("assistant", "x")]))
        try:
            tokenizer.encode(markup.replace("x", ""), allowed_special=set(self.template.special_tokens))
        except ValueError as e:
            raise ValueError(
                f"the {self.template.name} template's text cannot be written by {base!r} ({e}); use a byte-level "
                "tokenizer (data.tokenizer.kind bpe or tiktoken), or start from a checkpoint that has one"
            ) from None
        return tokenizer

    def splits(self, tokenizer: Tokenizer, block_size: int, val_fraction: float, seed: int) -> tuple[list, list]:
        train, val = split_records(self.records, val_fraction, seed)
        args = (tokenizer, self.template, block_size, self.settings.too_long, self.pairs)
        return build_examples(train, *args), build_examples(val, *args)

    def grouping(self, examples: list[list[Encoded]], batch: int) -> dict:
        """The training sampler's grouping: batches of about one length, within runs of 16 batches."""
        return {"lengths": lengths_of(examples), "group": 16 * batch}

    def collate(self, tokenizer: Tokenizer) -> PadExamples:
        pad = tokenizer.eot_id if tokenizer.eot_id is not None else 0  # never attended to, never scored
        return PadExamples(pad, self.settings.train_on_prompt)

    def held_out(self, val_fraction: float, seed: int, n: int) -> list[Record]:
        """The first n held-out records: what TensorBoard shows the model answering."""
        return split_records(self.records, val_fraction, seed)[1][:n]
