"""The generation tasks' speed: GSM8K items a second through the batched decoder
(gpt/model/batching.py) at --slots rows against one request at a time, side by side in one run
on the same model and prompts, with the share of greedy completions that come out the same;
and HumanEval's sandbox: its 164 canonical solutions, programs a second.

    python benchmarks/eval_generation.py --preset baby --limit 32            # random weights
    python benchmarks/eval_generation.py --ckpt CKPT --limit 64 --slots 32 --device cuda

A random model writes nothing useful but as many tokens as a trained one would (each
completion runs to --max_new_tokens or a stop string): the speed is what is measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt.eval.checkers import humaneval_program  # noqa: E402
from gpt.eval.executor import run_programs  # noqa: E402
from gpt.eval.run import data_dirs, find_data  # noqa: E402
from gpt.eval.sampling import encode_prompts, sample  # noqa: E402
from gpt.eval.task import EvalSettings  # noqa: E402
from gpt.eval.tasks.gsm8k import STOP, fewshot_prompt  # noqa: E402
from gpt.eval.tasks.gsm8k import TASK as GSM8K  # noqa: E402
from gpt.eval.tasks.humaneval import TASK as HUMANEVAL  # noqa: E402
from gpt.interop.checkpoint import load_model  # noqa: E402
from gpt.model.config import GPTConfig  # noqa: E402
from gpt.model.models import GPT  # noqa: E402
from gpt.tokenizers import TiktokenTokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baby", help="random weights of this size, GPT-2's tokenizer")
    parser.add_argument("--ckpt", default=None, help="a checkpoint instead (its own tokenizer)")
    parser.add_argument("--limit", type=int, default=32, help="GSM8K problems")
    parser.add_argument("--slots", type=int, default=32, help="rows of the batched decoder")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data_dir", default=None, help="the folder with gsm8k/ and humaneval/")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.ckpt:
        model, tokenizer = load_model(args.ckpt)
    else:
        tokenizer = TiktokenTokenizer("r50k_base")
        model = GPT(GPTConfig(preset=args.preset, vocab_size=tokenizer.vocab_size, block_size=1024, dropout=0.0))
    model = model.eval().to(args.device)
    data = find_data(GSM8K, data_dirs(args.data_dir))
    items = GSM8K.load(data, args.limit)
    prompts, _ = encode_prompts(
        tokenizer, [fewshot_prompt(i) for i in items], None, "gsm8k", model.config.block_size, args.max_new_tokens
    )
    rows, texts = {}, {}
    for slots in (1, args.slots):
        settings = EvalSettings(device=args.device, batch_size=slots)
        sample(model, tokenizer, prompts[:2], settings, args.max_new_tokens, STOP)  # warm up
        start = time.perf_counter()
        out = sample(model, tokenizer, prompts, settings, args.max_new_tokens, STOP)
        seconds = time.perf_counter() - start
        texts[slots] = [samples[0].text for samples in out]
        rows[slots] = (len(items) / seconds, sum(len(s[0].ids) for s in out) / seconds)
    same = sum(a == b for a, b in zip(texts[1], texts[args.slots])) / len(items)
    params = sum(p.numel() for p in model.parameters())
    what = args.ckpt or f"{args.preset}, random weights"
    print(f"{what}: {params / 1e6:.1f}M parameters on {args.device}, GSM8K 5-shot, {len(items)} problems, greedy")
    print("| decoder | items/s | tokens/s | x one at a time |")
    print("| --- | --- | --- | --- |")
    for slots, (per_item, per_token) in rows.items():
        name = "one at a time" if slots == 1 else f"batched, {slots} rows"
        print(f"| {name} | {per_item:.2f} | {per_token:,.0f} | {per_item / rows[1][0]:.2f} |")
    print(f"same greedy completions: {same:.0%}")
    problems = HUMANEVAL.load(find_data(HUMANEVAL, data_dirs(args.data_dir)))
    programs = [humaneval_program(p["canonical_solution"], p) for p in problems]
    start = time.perf_counter()
    outcomes = run_programs(programs)
    seconds = time.perf_counter() - start
    print(
        f"HumanEval canonical solutions: {sum(o.passed for o in outcomes)}/{len(outcomes)} pass, "
        f"{len(outcomes) / seconds:.0f} programs/s in the sandbox ({outcomes[0].isolation})"
    )


if __name__ == "__main__":
    main()
