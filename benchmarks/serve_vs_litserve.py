"""Our server against LitServe (Lightning's own server library) serving the same model, under
the same load: why gpt.serve is built on FastAPI + uvicorn with an engine of its own.

    pip install litserve
    python benchmarks/serve_vs_litserve.py --ckpt lightning_logs/shakespeare_char_cpu/version_0/checkpoints/last.ckpt

LitServe's way of batching many requests is its batching loop: it gathers up to max_batch_size
requests (waiting at most batch_timeout), runs `predict` on them as one batch, and answers
each when the whole batch is done. Here `predict` decodes each group of same-length prompts as
one batch with our KV-cached `generate` (the batch has one sampling setting: its first
request's). Our server decodes continuously: a request joins the batch at the next step and
leaves it when it ends. Both listen on 127.0.0.1 and are stopped by their pid; the load is
benchmarks/serve_load.py's (its clients, prompts and request count).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from serve_load import free_port, measure  # noqa: E402

try:
    import litserve as ls
except ImportError:  # only the LitServe half needs it
    ls = None

if ls is not None:

    class GPTCompletions(ls.LitAPI):
        """Our model behind LitServe's batching loop (a class at module level: LitServe's
        workers are spawned processes, which unpickle it by name)."""

        def __init__(self, ckpt: str, **kwargs):
            super().__init__(**kwargs)
            self.ckpt = ckpt

        def setup(self, device):
            import torch

            from gpt.interop.checkpoint import load_model

            torch.set_num_threads(1)  # as gpt.serve does for a small model on a CPU
            self.model, self.tokenizer = load_model(self.ckpt)

        def decode_request(self, request):
            return {
                "ids": self.tokenizer.encode(request["prompt"]),
                "max_tokens": request.get("max_tokens", 16),
                "temperature": request.get("temperature", 1.0),
                "seed": request.get("seed"),
            }

        def predict(self, batch):
            import torch

            from gpt.model.generation import generate

            texts = [None] * len(batch)
            by_length: dict[int, list[int]] = {}
            for i, r in enumerate(batch):
                by_length.setdefault(len(r["ids"]), []).append(i)
            for rows in by_length.values():  # one generate for each prompt length
                first = batch[rows[0]]
                ids = torch.tensor([batch[i]["ids"] for i in rows])
                steps = max(batch[i]["max_tokens"] for i in rows)
                generator = torch.Generator().manual_seed(first["seed"] or 0)
                out = generate(self.model, ids, steps, temperature=first["temperature"], generator=generator)
                for row, i in enumerate(rows):
                    new = out[row, ids.size(1) : ids.size(1) + batch[i]["max_tokens"]].tolist()
                    texts[i] = (self.tokenizer.decode(new), len(new))
            return texts

        def encode_response(self, output):
            text, n = output
            return {"choices": [{"text": text, "index": 0}], "usage": {"completion_tokens": n}}


def litserve_app(ckpt: str, port: int, max_batch_size: int, batch_timeout: float) -> None:
    """Run LitServe on 127.0.0.1:port with our model behind /v1/completions (in this process)."""
    if ls is None:
        raise SystemExit("error: LitServe is not installed; pip install litserve")
    api = GPTCompletions(ckpt, max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/v1/completions")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="the checkpoint both serve")
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=384)
    parser.add_argument("--max_tokens", type=int, default=48)
    parser.add_argument("--batch_timeout", type=float, default=0.01, help="LitServe's wait to fill a batch, in s")
    parser.add_argument("--litserve_port", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    ckpt = str(Path(args.ckpt).resolve())
    if args.litserve_port is not None:
        return litserve_app(ckpt, args.litserve_port, max(args.clients), args.batch_timeout)
    rows = {}
    port = free_port()
    ours = [sys.executable, "-m", "gpt.serve", ckpt, "--port", str(port), "--slots", str(max(args.clients))]
    rows["gpt.serve (continuous)"] = measure(
        ours, f"http://127.0.0.1:{port}", args.clients, args.requests, args.max_tokens
    )
    port = free_port()
    theirs = [sys.executable, __file__, "--ckpt", ckpt, "--litserve_port", str(port)]
    theirs += ["--clients", *map(str, args.clients), "--batch_timeout", str(args.batch_timeout)]
    rows[f"LitServe (batches of up to {max(args.clients)}, {args.batch_timeout * 1000:.0f} ms to fill)"] = measure(
        theirs, f"http://127.0.0.1:{port}", args.clients, args.requests, args.max_tokens
    )
    print(f"{args.ckpt}: {args.requests} requests a level, {args.max_tokens} new tokens each, temperature 0.8\n")
    print("| server | clients | tokens/s | x its one at a time | p50 s | p99 s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, levels in rows.items():
        for r in levels:
            ratio = r["tokens_per_s"] / levels[0]["tokens_per_s"]
            speed = f"{r['tokens_per_s']:,.0f} | {ratio:.2f}"
            print(f"| {name} | {r['clients']} | {speed} | {r['p50']:.2f} | {r['p99']:.2f} |")


if __name__ == "__main__":
    main()
