"""HellaSwag (Zellers et al., 2019): pick the right ending of a sentence, out of four.

    items = read_items(download("val", "data"))        # 10,042 items: ctx, 4 endings, label
    evaluate(model, tokenizer, items, "cpu")           # {"acc": ..., "acc_norm": ..., "n": ...}
    python -m gpt.eval.hellaswag lightning_logs/.../last.ckpt --limit 500 [--log]

Scored as llm.c's dev/data/hellaswag.py does ("completion style"): each ending is encoded
as " " + ending after the context's tokens, and the model's log-probability of the
ending's tokens is summed. `acc` counts the items whose right ending has the highest sum,
`acc_norm` those whose right ending has the highest mean per token (so longer endings are
not penalised for their length). Chance is 0.25 for both.

Plain torch, no Lightning.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from gpt.data.download import fetch
from gpt.eval.tasks.files import json_object
from gpt.files import write_bytes
from gpt.interop.checkpoint import checkpoint_tokenizer, load_checkpoint, model_config, model_weights, said_checkpoint
from gpt.model.models import LanguageModel, build_model
from gpt.tokenizers import Tokenizer

# The dataset as its authors serve it (the URLs llm.c downloads). The test split's labels are hidden.
HELLASWAG_URLS = {
    split: f"https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{split}.jsonl"
    for split in ("train", "val", "test")
}
ITEMS_PER_BATCH = 8  # items scored in one forward pass (4 rows each)


def download(split: str, data_dir: str | Path = "data") -> Path:
    """data_dir/hellaswag/hellaswag_{split}.jsonl, downloaded (atomically) unless already there."""
    if split not in HELLASWAG_URLS:
        raise ValueError(f"unknown HellaSwag split {split!r}; choose one of {', '.join(HELLASWAG_URLS)}")
    path = Path(data_dir) / "hellaswag" / f"hellaswag_{split}.jsonl"
    if path.is_file():
        return path
    write_bytes(path, fetch(HELLASWAG_URLS[split], f"HellaSwag {split}", path, "--data"))
    return path


def read_items(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` items (all if None) of a HellaSwag jsonl file: dicts with `ctx`
    (str), `endings` (4 str) and `label` (0-3); other keys are kept as they are."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HellaSwag file {str(path)!r} does not exist; check the path, or use --split val")
    items = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if limit is not None and len(items) >= limit:
                break
            if line.strip():
                items.append(check_item(line, f"{path}, line {number}"))
    if not items:
        raise ValueError(f"HellaSwag file {str(path)!r} holds no items")
    return items


def check_item(line: str, where: str) -> dict[str, Any]:
    """One jsonl line as an item, or a ValueError that says where and what is wrong."""
    item = json_object(line, where, {})
    missing = [k for k in ("ctx", "endings", "label") if k not in item]
    if missing:
        hint = " (the test split's labels are hidden: use val)" if missing == ["label"] else ""
        raise ValueError(f"{where}: no {', '.join(missing)}{hint}")
    if not isinstance(item["ctx"], str):
        raise ValueError(f"{where}: ctx must be a string")
    endings = item["endings"]
    if not (isinstance(endings, list) and len(endings) == 4 and all(isinstance(e, str) for e in endings)):
        raise ValueError(f"{where}: endings must be a list of 4 strings")
    label = item["label"]
    if isinstance(label, str) and label.isdigit():  # some copies of the data write "3"
        label = item["label"] = int(label)
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < 4:
        raise ValueError(f"{where}: label must be 0, 1, 2 or 3, got {label!r}")
    return item


def encode_item(tokenizer: Tokenizer, item: dict[str, Any]) -> tuple[list[int], list[list[int]]]:
    """The context's ids and each ending's, " " + ending, encoded apart as llm.c does (GPT-2's
    BPE keeps a word's leading space in its token, so the endings start on a word)."""
    try:
        return tokenizer.encode(item["ctx"]), [tokenizer.encode(" " + ending) for ending in item["endings"]]
    except ValueError as e:  # a character tokenizer meets a character its corpus did not have
        which = f"ind {item['ind']}" if "ind" in item else f"context {item['ctx'][:40]!r}"
        raise ValueError(
            f"HellaSwag item ({which}) cannot be encoded: {e}. A character tokenizer knows only its corpus's "
            "characters; evaluate a model with a BPE or tiktoken tokenizer"
        ) from None


def score_rows(
    model: LanguageModel, rows: list[tuple[list[int], list[int]]], device: str | torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed and mean log-probability of each (context, ending) row's ending tokens, all
    rows right-padded into one batch."""
    block_size = model.config.block_size
    inputs, targets, scored = [], [], []
    for ctx, ending in rows:
        # The last block_size + 1 tokens: the model reads block_size of them and predicts
        # each next one; a longer context loses its start, as in generation.
        row = (ctx + ending)[-(block_size + 1) :]
        inputs.append(row[:-1])
        targets.append(row[1:])
        scored.append(min(len(ending), len(row) - 1))  # an ending's first token needs one before it
    T = max(len(x) for x in inputs)
    x = torch.zeros(len(rows), T, dtype=torch.long)
    y = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (inp, tgt, n) in enumerate(zip(inputs, targets, scored)):
        x[i, : len(inp)] = torch.tensor(inp)
        y[i, : len(tgt)] = torch.tensor(tgt)
        mask[i, len(tgt) - n : len(tgt)] = True
    # Padding goes on the right: causal attention never lets a real position see it.
    logits = model(x.to(device)).float()
    # log p(y) = logit(y) - logsumexp(logits): no second (B, T, vocab) tensor, as log_softmax would make.
    logprobs = (logits.gather(2, y.to(device).unsqueeze(-1)).squeeze(-1) - logits.logsumexp(dim=-1)).cpu()
    total = (logprobs * mask).sum(dim=1)
    return total, total / mask.sum(dim=1).clamp(min=1)


@torch.no_grad()
def score_item(
    model: LanguageModel, tokenizer: Tokenizer, item: dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 endings' summed log-probabilities and their means per token."""
    ctx, endings = encode_item(tokenizer, item)
    return score_rows(model, [(ctx, ending) for ending in endings], device)


def check_causal(model: LanguageModel) -> None:
    if not model.config.causal:
        raise ValueError(
            "HellaSwag scores how likely a model finds each ending as the next tokens; this is a masked language "
            "model (attention both ways), which does not predict next tokens: evaluate a causal one"
        )


@torch.no_grad()
def evaluate(
    model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], device: str | torch.device = "cpu"
) -> dict[str, float]:
    """acc (highest summed log-probability is the label), acc_norm (highest mean per token)
    over the items, and n, their count."""
    counts = correct_counts(model, tokenizer, items, device)
    n = max(counts["n"], 1)
    return {"acc": counts["acc"] / n, "acc_norm": counts["acc_norm"] / n, "n": counts["n"]}


@torch.no_grad()
def correct_counts(
    model: LanguageModel, tokenizer: Tokenizer, items: list[dict[str, Any]], device: str | torch.device = "cpu"
) -> dict[str, int]:
    """How many items each rule gets right, and how many there were (counts add up across
    processes; accuracies would not)."""
    check_causal(model)
    was_training = model.training
    model.eval()  # no dropout while scoring
    acc = acc_norm = 0
    try:
        for start in range(0, len(items), ITEMS_PER_BATCH):
            batch = items[start : start + ITEMS_PER_BATCH]
            rows = []
            for item in batch:
                ctx, endings = encode_item(tokenizer, item)
                rows += [(ctx, ending) for ending in endings]
            total, mean = score_rows(model, rows, device)
            labels = torch.tensor([item["label"] for item in batch])
            acc += int((total.view(-1, 4).argmax(dim=1) == labels).sum())
            acc_norm += int((mean.view(-1, 4).argmax(dim=1) == labels).sum())
    finally:
        model.train(was_training)
    return {"acc": acc, "acc_norm": acc_norm, "n": len(items)}


# ---- the command line


def load(ckpt: str | Path) -> tuple[LanguageModel, Tokenizer, int]:
    """A checkpoint's model (eval mode), tokenizer, and the training step it was saved at."""
    checkpoint = load_checkpoint(ckpt)
    model = build_model(model_config(checkpoint))
    model.load_state_dict(model_weights(checkpoint))
    tokenizer = checkpoint_tokenizer(checkpoint)
    if tokenizer is None:
        raise ValueError(f"checkpoint {str(ckpt)!r} has no tokenizer; was it written by this project's `main.py fit`?")
    return model.eval(), tokenizer, int(checkpoint.get("global_step", 0))


def run_folder(ckpt: str | Path) -> Path:
    """lightning_logs/NAME/version_N of a checkpoint at lightning_logs/NAME/version_N/checkpoints/X.ckpt."""
    folder = Path(ckpt).resolve().parent
    if folder.name != "checkpoints":
        raise ValueError(
            f"{str(ckpt)!r} is not in a run's checkpoints/ folder (lightning_logs/NAME/version_N/checkpoints/), "
            "so there is no run to log to; leave out --log"
        )
    return folder.parent


def log_scalars(run_dir: Path, step: int, scalars: dict[str, float]) -> Path:
    """Write scalars at `step` into the run's TensorBoard, as one new events file moved into
    run_dir whole (a crash leaves no half-written file in the run)."""
    from torch.utils.tensorboard import SummaryWriter  # only when logging: it loads tensorboard

    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".hellaswag-"))
    try:
        writer = SummaryWriter(log_dir=str(tmp))
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
        writer.close()
        (events,) = tmp.iterdir()
        os.replace(events, run_dir / events.name)
        return run_dir / events.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(args: list[str] | None = None) -> None:
    from jsonargparse import ActionYesNo, ArgumentParser

    p = ArgumentParser(
        prog="python -m gpt.eval.hellaswag",
        description="HellaSwag accuracy of a checkpoint of main.py fit",
        allow_abbrev=False,
    )
    p.add_argument(
        "ckpt", type=str, help="a checkpoint, or a run folder (its newest last.ckpt), e.g. lightning_logs/NAME"
    )
    p.add_argument("--data", type=str | None, default=None, help="a HellaSwag jsonl file (default: --split's)")
    p.add_argument("--split", type=str, default="val", help="train, val or test, downloaded into --data_dir")
    p.add_argument("--limit", type=int | None, default=None, help="score the first N items only")
    p.add_argument("--data_dir", type=str, default="data", help="where downloads land")
    p.add_argument("--log", action=ActionYesNo, default=False, help="write hellaswag/acc, acc_norm to the run")
    p.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    cfg = p.parse_args(args)
    cfg.ckpt = said_checkpoint(cfg.ckpt)  # a run folder: its newest last.ckpt
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {cfg.limit}")
    run_dir = run_folder(cfg.ckpt) if cfg.log else None  # refused before any work
    model, tokenizer, step = load(cfg.ckpt)  # before a download: a wrong path shows at once
    items = read_items(cfg.data or download(cfg.split, cfg.data_dir), cfg.limit)
    result = evaluate(model.to(cfg.device), tokenizer, items, cfg.device)
    print(f"hellaswag acc {result['acc']:.4f} acc_norm {result['acc_norm']:.4f} over {result['n']} items")
    if run_dir is not None:
        # At the x of the validation that saw these weights, as the run's val/loss: Lightning
        # counts the logger's steps from 0, so the validation after N steps sits at N - 1.
        step = max(step - 1, 0)
        scalars = {"hellaswag/acc": result["acc"], "hellaswag/acc_norm": result["acc_norm"]}
        print(f"logged to {log_scalars(run_dir, step, scalars)} at step {step}")


if __name__ == "__main__":
    from gpt.errors import exit_on_user_error

    exit_on_user_error(main)
