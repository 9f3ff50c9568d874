"""python -m gpt.serve CKPT: an OpenAI-compatible server and a page (gpt/serve/server.py)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import torch

from gpt.data.templates import template
from gpt.errors import exit_on_user_error
from gpt.interop.checkpoint import checkpoint_tokenizer, load_checkpoint, model_of, said_checkpoint
from gpt.model.quantize import int8_weights
from gpt.serve.engine import Engine
from gpt.serve.server import Served, create_app


def model_name(ckpt: Path) -> str:
    """The run's name (lightning_logs/NAME/version_N/checkpoints/last.ckpt -> NAME), else the file's."""
    parts = ckpt.resolve().parts
    if len(parts) >= 4 and parts[-2] == "checkpoints" and parts[-3].startswith("version_"):
        return "gpt" if parts[-4] == "lightning_logs" else parts[-4]  # a run without a config has no name
    return ckpt.stem


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before the model is served: a port in use, out of range or a
    host that is not this machine's is one error line, not uvicorn's traceback."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be from 0 to 65535 (0: any free port), got {port}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port just freed is free
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(
            f"cannot listen on {host}:{port} ({e.strerror or e}): another server may hold the port, or the host "
            "is not this machine's; give another --port or --host"
        ) from None
    return sock


def main(args: list[str] | None = None) -> None:
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="python -m gpt.serve", description=(__doc__ or "").strip(), allow_abbrev=False)
    p.add_argument("ckpt", type=str, help="a checkpoint of this project (a LoRA one is merged), or a run folder")
    p.add_argument("--host", type=str, default="127.0.0.1", help="the address to listen on (0.0.0.0: every one)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api_key", type=str | None, default=None, help="refuse /v1 without it (default: $GPT_API_KEY)")
    p.add_argument("--name", type=str | None, default=None, help="the model's name in the API (default: the run's)")
    p.add_argument("--slots", type=int, default=16, help="requests decoded together")
    p.add_argument("--queue", type=int, default=64, help="requests that may wait for a slot; more get 429")
    p.add_argument("--max_body", type=int, default=1_000_000, help="the largest request body, in bytes (413 past it)")
    p.add_argument("--int8", type=bool, nargs="?", const=True, default=False, help="int8 weights: faster on a CPU")
    p.add_argument(
        "--threads",
        type=int | None,
        default=None,
        help="torch's threads (default: 1 for a model under 20M parameters on a CPU, whose matmuls are too "
        "small to split, leaving a core to the web server; else torch's default)",
    )
    p.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(args)
    for name, value in (("slots", a.slots), ("queue", a.queue), ("max_body", a.max_body)):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    a.ckpt = said_checkpoint(a.ckpt)  # a run folder: its newest last.ckpt
    checkpoint = load_checkpoint(a.ckpt)
    model, tokenizer = model_of(checkpoint, a.ckpt).to(a.device), checkpoint_tokenizer(checkpoint)
    small = sum(p.numel() for p in model.parameters()) < 20_000_000 and a.device == "cpu"
    if a.threads is not None or small:
        torch.set_num_threads(a.threads or 1)
    if tokenizer is None:
        raise ValueError(f"checkpoint {a.ckpt!r} has no tokenizer; serve one that main.py fit wrote")
    if a.int8:
        model = int8_weights(model)
    chat = template(checkpoint["template"]) if checkpoint.get("template") else None
    name = a.name or model_name(Path(a.ckpt))
    engine = Engine(model, tokenizer, a.slots, a.queue)
    served = Served(engine, name, chat, a.api_key or os.environ.get("GPT_API_KEY"), a.max_body)
    import uvicorn

    sock = listening_socket(a.host, a.port)
    config = uvicorn.Config(create_app(served), log_level="warning", timeout_graceful_shutdown=120)
    kinds = "completions and chat" if chat else "completions"
    port = sock.getsockname()[1]  # --port 0: the free port the system gave
    print(f"serving {name} ({kinds}) on http://{a.host}:{port}/ (the page) and /v1 (the API)", file=sys.stderr)
    if served.api_key is None and a.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: no API key: anyone who can reach {a.host}:{port} can use the model (--api_key)", file=sys.stderr
        )
    # uvicorn stops on SIGINT/SIGTERM once the requests in flight are answered, then raises the
    # signal again for the handler it found: ours lets the process end with 0, as it should.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])
    print("stopped: every request in flight was answered", file=sys.stderr)


if __name__ == "__main__":
    exit_on_user_error(main)
