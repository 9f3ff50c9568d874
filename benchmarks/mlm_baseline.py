"""What a masked LM must beat: guessing without context.

    python benchmarks/mlm_baseline.py [--config configs/shakespeare_mlm.yaml] [--corpus PATH]

Builds the config's data module (tokenizer, mode, block_size) and, over the real tokens of
the validation examples (the masked positions are a uniform sample of them), prints the
accuracy of always guessing the most frequent token and the loss (nats) of predicting the
unigram frequencies, the best any context-free guess can do.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.tokenizers.settings import tokenizer_config  # noqa: E402
from gpt.train.datamodule import GPTDataModule  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "shakespeare_mlm.yaml"))
    parser.add_argument("--corpus")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    data = dict(config["data"])
    data["tokenizer"] = tokenizer_config(**data.get("tokenizer", {}))
    if args.corpus:
        data["corpus"] = args.corpus
    dm = GPTDataModule(**data, block_size=config["model"]["block_size"], objective=config["model"]["objective"])
    dm.setup("fit")
    counts = Counter(t for e in dm.val_ids for t in e.tolist())
    total = sum(counts.values())
    token, top = counts.most_common(1)[0]
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    print(f"validation: {len(dm.val_ids)} examples, {total:,} tokens")
    print(f"always {dm.tokenizer.decode([token])!r}: accuracy {top / total:.4f}")
    print(f"unigram frequencies: loss {entropy:.4f} nats")


if __name__ == "__main__":
    main()
